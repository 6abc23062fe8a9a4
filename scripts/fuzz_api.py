#!/usr/bin/env python3
"""The schema fuzz of the sidecar: schemathesis against the real binary.

Run by scripts/fuzz_api.sh with the Python that has schemathesis. It

1. starts `steerfeed serve` on a free loopback port with a temporary store, an API key
   and the server's own clock (`server.allow_client_clock` off, as deployed),
2. waits for /readyz, then seeds a few users, videos, a consent setting, a follow and
   an event, so that generated requests can name things that exist,
3. runs `st run` on GET /openapi.json with the settings written to a schemathesis.toml
   in the temporary folder: the seeded ids and recent dates as dictionaries the
   generator draws from, every phase but the stateful one, a fixed seed, and the checks
   below,
4. stops the server with SIGTERM: it must exit 0, and its log must hold no panic.

Checks (schemathesis' and scripts/fuzz_hooks.py's):
- not_a_server_error: no 5xx, for valid and invalid data alike;
- status_code_conformance, content_type_conformance, response_schema_conformance: every
  answer is documented and its body matches the documented schema;
- positive_data_acceptance: data the schema allows is answered 2xx, or 404 (an unknown
  user or video: a schema cannot know which ids exist) or 422, and
  relational_rejections_only (the hooks) admits a 422 only for what no schema can say: a
  user acting on themselves, a remix naming itself, an event date outside the server's
  window, a cursor this server did not issue, `now` without allow_client_clock;
- every_operation_accepts: each operation answered 2xx at least once, so the fuzz
  reached past the checks of every route;
- ignored_auth, unsupported_method: a request without the key is 401, a method the path
  does not take is 405 with `Allow`.

negative_data_rejection is not run: where JSON Schema cannot count bytes the schema is
narrower than the server (an id of 40 accented letters is a valid id of 80 bytes that
the pattern does not admit), so some data the schema refuses is rightly accepted.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from pathlib import Path

KEY = "fuzz-key-0123456789abcdef"
HERE = Path(__file__).resolve().parent

USERS = ["ana", "bo", "cy", "dee", "zoë", "teen"]
ERASABLE = "erasable"
VIDEOS = ["v-cats", "v-soup", "v-bikes", "v-ζ"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(port: int, method: str, path: str, body=None) -> tuple[int, object]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{urllib.parse.quote(path)}",
        data=data,
        method=method,
        headers={"authorization": f"Bearer {KEY}", "content-type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            raw = r.read()
            return r.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as e:
        raw = e.read()
        return e.code, json.loads(raw) if raw else None


def wait_ready(port: int, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"fuzz-api: the server exited early ({proc.returncode})")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise SystemExit("fuzz-api: the server was not ready in time")


def rfc3339(t: datetime.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


HEADS = ["create", "remix", "cameo_use", "comment", "share", "follow", "like", "complete_view"]
FEATURES = ["bias", "prior", "interest", "tie", "co_engagement", "creator", "followed",
            "remix_chain", "friend_cameo"]


def model_file() -> str:
    """A valid model file (the format of docs/design.md §12: a header line with the
    body's CRC-32, then the JSON body), for the fuzz's model routes."""
    coef = {f: 0.0 for f in FEATURES}
    coef.update(prior=1.0, interest=2.0, tie=0.5, co_engagement=4.0, creator=1.0)
    body = json.dumps({
        "id": "m-fuzz", "features": FEATURES, "heads": {h: dict(coef) for h in HEADS},
        "metadata": {"by": "fuzz_api.py"},
    }).encode()
    return f"steerfeed-model 1 crc32:{zlib.crc32(body):08x}\n" + body.decode()


def seed(port: int) -> None:
    now = datetime.datetime.now(datetime.timezone.utc)
    users = [{"id": u} for u in USERS if u != "teen"]
    users.append({"id": "teen", "age_band": "teen", "time_zone": "Europe/Paris"})
    # Erasures go to this person (fuzz_hooks.py), so that the others stay for the rest.
    users.append({"id": ERASABLE})
    unit = [1.0] + [0.0] * 383
    videos = [
        {"id": "v-cats", "creator": "ana", "created_at": rfc3339(now), "duration_s": 12,
         "caption": "a kitten chases a laser pointer", "cameos": ["bo"]},
        {"id": "v-soup", "creator": "bo", "created_at": rfc3339(now), "duration_s": 30,
         "caption": "easy tomato soup for a rainy day"},
        {"id": "v-bikes", "creator": "zoë", "created_at": rfc3339(now), "duration_s": 45,
         "embedding": unit, "topics": ["sports"]},
        {"id": "v-gone", "creator": ERASABLE, "created_at": rfc3339(now), "duration_s": 9,
         "caption": "a person who will be erased waves", "cameos": [ERASABLE]},
        {"id": "v-ζ", "creator": "cy", "created_at": rfc3339(now), "duration_s": 8,
         "caption": "a remix of the kitten", "remix_of": "v-cats"},
    ]
    steps = [
        ("POST", "/v1/users", {"users": users}),
        ("PUT", "/v1/users/bo/consent", {"scope": "everyone"}),
        ("PUT", "/v1/videos", {"videos": videos}),
        ("PUT", "/v1/users/cy/follows/ana", None),
        ("POST", "/v1/events", {"events": [
            {"key": "seed-1", "user": "cy", "at": rfc3339(now), "kind": "view",
             "video": "v-cats", "watch_ms": 12000, "completed": True}]}),
    ]
    # Models a rollback can return from.
    steps += [("PUT", "/v1/model", {"file": model_file()})] * 8
    for method, path, body in steps:
        status, answer = call(port, method, path, body)
        if status >= 300:
            raise SystemExit(f"fuzz-api: seeding {method} {path}: {status} {answer}")


def config(out: Path) -> Path:
    """Writes the schemathesis.toml of the run into `out`."""
    now = datetime.datetime.now(datetime.timezone.utc)
    # Recent dates, inside [now - event_max_age_s, now + event_max_ahead_s] for the whole run.
    times = [rfc3339(now - datetime.timedelta(seconds=s)) for s in (0, 90, 3600, 86400, 5 * 86400)]
    q = lambda values: json.dumps(values, ensure_ascii=False)  # noqa: E731 (TOML arrays)
    max_time = os.environ.get("FUZZ_MAX_TIME", "")
    max_time = f"max-time = {int(max_time)}\n" if max_time else ""
    text = f"""\
seed = {int(os.environ.get("FUZZ_SEED", "1"))}
{max_time}request-timeout = 120
workers = 1
# Hypothesis' health checks judge the generator's speed, not the API.
suppress-health-check = ["too_slow", "filter_too_much", "data_too_large", "large_base_example"]
headers = {{ Authorization = "Bearer {KEY}" }}

[generation]
max-examples = {int(os.environ.get("FUZZ_EXAMPLES", "200"))}
database = "none"

[phases.stateful]
enabled = false

# What generated requests name, drawn from what the seeding stored (ids) or from dates
# the server takes (event times); else from the schema.
[dictionaries]
users = {{ values = {q(USERS)} }}
videos = {{ values = {q(VIDEOS)} }}
times = {{ values = {q(times)} }}
cursors = {{ values = ["p1", "p2", "p1000000"] }}

[parameters]
"path.id" = {{ dictionary = "users", probability = 0.8 }}
"path.creator" = {{ dictionary = "users", probability = 0.8 }}
"path.other" = {{ dictionary = "users", probability = 0.8 }}
"body.user" = {{ dictionary = "users", probability = 0.8 }}
"body.cursor" = {{ dictionary = "cursors", probability = 0.8 }}
"body.creator" = {{ dictionary = "users", probability = 0.8 }}
"body.video" = {{ dictionary = "videos", probability = 0.8 }}
"body.approved[*]" = {{ dictionary = "users", probability = 0.5 }}
"body.users[*].id" = {{ dictionary = "users", probability = 0.3 }}
"body.videos[*].id" = {{ dictionary = "videos", probability = 0.2 }}
"body.videos[*].creator" = {{ dictionary = "users", probability = 0.9 }}
"body.videos[*].cameos[*]" = {{ dictionary = "users", probability = 0.9 }}
"body.videos[*].remix_of" = {{ dictionary = "videos", probability = 0.5 }}
"body.events[*].user" = {{ dictionary = "users", probability = 0.97 }}
"body.events[*].video" = {{ dictionary = "videos", probability = 0.97 }}
"body.events[*].new_video" = {{ dictionary = "videos", probability = 0.3 }}
"body.events[*].at" = {{ dictionary = "times", probability = 0.97 }}

[checks]
enabled = false
not_a_server_error = {{ enabled = true }}
status_code_conformance = {{ enabled = true }}
content_type_conformance = {{ enabled = true }}
response_schema_conformance = {{ enabled = true }}
# 404: an unknown user or video; 422: narrowed by relational_rejections_only.
positive_data_acceptance = {{ enabled = true, expected-statuses = ["2xx", "404", "422"] }}
relational_rejections_only = {{ enabled = true }}
# Without the key, 401; a method a path does not take, 405 with `Allow`.
ignored_auth = {{ enabled = true }}
unsupported_method = {{ enabled = true }}
every_operation_accepts = {{ enabled = true }}

# The one path id that names a video.
[[operations]]
include-path = "/v1/videos/{{id}}"
parameters = {{ "path.id" = {{ dictionary = "videos", probability = 0.8 }} }}
"""
    path = out / "schemathesis.toml"
    path.write_text(text)
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", required=True, help="the steerfeed binary")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="steerfeed-fuzz-"))
    port = free_port()
    env = dict(os.environ)
    env.update({
        "STEERFEED__STORE__PATH": str(tmp / "store"),
        "STEERFEED__SERVER__BIND": f"127.0.0.1:{port}",
        "STEERFEED__SERVER__API_KEYS": KEY,
        # A debug build on two shared cores: the fuzz checks answers, not latency.
        "STEERFEED__SERVER__REQUEST_TIMEOUT_MS": "120000",
        "STEERFEED__SERVER__IDLE_TIMEOUT_S": "180",
        "STEERFEED__STORE__CACHE_MB": "64",
        "RUST_LOG": "warn",
    })
    log_path = tmp / "server.log"
    started = time.monotonic()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([args.bin, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
    ok = False
    try:
        wait_ready(port, proc, timeout=600)
        seed(port)
        cfg = config(tmp)
        st_env = dict(os.environ)
        st_env["SCHEMATHESIS_HOOKS"] = str(HERE / "fuzz_hooks.py")
        st_env["FUZZ_SEEDED_USERS"] = ",".join(USERS)
        st_env["FUZZ_ERASABLE_USER"] = ERASABLE
        st_env["FUZZ_BACKUP_ROOT"] = str(tmp / "backups")
        (tmp / "model.txt").write_text(model_file())
        st_env["FUZZ_MODEL_FILE"] = str(tmp / "model.txt")
        cmd = [
            sys.executable, "-m", "schemathesis.cli", "--config-file", str(cfg), "--no-color",
            "run", f"http://127.0.0.1:{port}/openapi.json",
            "--report", "junit", "--report-dir", str(tmp / "report"),
        ]
        print("fuzz-api: " + " ".join(cmd[1:]), file=sys.stderr, flush=True)
        try:
            # A bound on the whole run, whatever hangs: CI has a budget.
            rc = subprocess.call(cmd, env=st_env, cwd=tmp, timeout=int(os.environ.get("FUZZ_TIMEOUT", "1200")))
        except subprocess.TimeoutExpired:
            print("fuzz-api: schemathesis did not finish within FUZZ_TIMEOUT", file=sys.stderr)
            rc = -1
        ok = rc == 0
        if not ok:
            print(f"fuzz-api: schemathesis failed ({rc}); its settings: {cfg}", file=sys.stderr)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
        log_text = log_path.read_text(errors="replace")
        if code != 0:
            print(f"fuzz-api: the server exited {code} after SIGTERM", file=sys.stderr)
            ok = False
        if "panicked" in log_text:
            print("fuzz-api: the server log holds a panic", file=sys.stderr)
            ok = False
        if not ok:
            print("fuzz-api: the server's log (last 60 lines):", file=sys.stderr)
            print("\n".join(log_text.splitlines()[-60:]), file=sys.stderr)
    elapsed = time.monotonic() - started
    if ok and not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        print(f"fuzz-api: kept {tmp}", file=sys.stderr)
    verdict = "passed" if ok else "FAILED"
    print(f"fuzz-api: {verdict} in {elapsed:.0f} s", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
