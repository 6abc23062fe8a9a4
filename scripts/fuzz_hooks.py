"""Checks of the sidecar's schema fuzz (loaded by scripts/fuzz_api.py through
SCHEMATHESIS_HOOKS).

relational_rejections_only: a 422 answered to data the schema allows must be one of the
rules the OpenAPI document states in words because JSON Schema cannot (the error's
`field` names which):
- `follow`, `block`, `mute`: the two users of a graph route are the same user;
- `events[i].new_video`: a remix event names the remixed video as its new video;
- `remix_of`: a video remixes itself;
- `videos[i].created_at`: a video dated after the server's clock + server.event_max_ahead_s;
- `events[i].at`: an event dated outside the server's window (server.event_max_age_s,
  server.event_max_ahead_s; the server's clock is not the client's);
- `cursor`: a cursor this server did not issue (cursors are opaque);
- `now`: a pinned clock, refused unless server.allow_client_clock;
- `change` (preferences PATCH): an item's new `expires_at` not after the server's clock or
  after the constraints' own expiry (or given to a slot), or a `strength` for anything but
  a `boost` or `reduce` item;
- `model` (and `model.*`): a model file whose checksum, format or feature schema the
  server refuses (`PUT /v1/model`), or a rollback with no earlier model to return to.
Any other 422 to valid data means the schema allows something the server refuses.

erasures_spare_the_seeded_users (a hook, not a check): an erasure generated for one of
the seeded users erases the one seeded for it instead, so that the routes after it still
find the people they name (a second erasure of that person answers `already_erased`).
The events of a valid batch get keys of their own (`fz<n>`): a key names one event, and
the generator's few short strings would otherwise reuse one for another event (409).
Likewise a backup goes into a new folder under the run's own temporary folder, whatever
absolute path was generated (one generated path in two of them: the second is refused
as existing). Every other model upload sends the valid model file of FUZZ_MODEL_FILE,
so that the route is seen to accept one.

every_operation_accepts: after the run, every operation tested has answered 2xx at least
once (else the fuzz never got past that route's checks, and proved little about it).
"""

from __future__ import annotations

import os
import re

import schemathesis

SEEDED = set(filter(None, os.environ.get("FUZZ_SEEDED_USERS", "").split(",")))
ERASABLE = os.environ.get("FUZZ_ERASABLE_USER", "erasable")
BACKUP_ROOT = os.environ.get("FUZZ_BACKUP_ROOT", "")
_backups = 0
MODEL_FILE = os.environ.get("FUZZ_MODEL_FILE", "")
_models = 0
_event_keys = 0

GRAPH = re.compile(r"^/v1/users/\{id\}/(follows|blocks|mutes)/\{(creator|other)\}$")


def _is_positive(case) -> bool:
    meta = getattr(case, "meta", None)
    return meta is not None and meta.generation.mode.is_positive


def _error_field(response) -> str | None:
    try:
        return response.json()["error"].get("field")
    except Exception:  # noqa: BLE001 (a body that is not the error shape explains nothing)
        return None


def _explained(case, field: str | None) -> bool:
    path = case.operation.path
    body = case.body if isinstance(case.body, dict) else {}
    params = case.path_parameters or {}
    graph = GRAPH.match(path)
    if graph:
        same = params.get("id") == params.get(graph.group(2))
        return same and field == {"follows": "follow", "blocks": "block", "mutes": "mute"}[graph.group(1)]
    if path == "/v1/events":
        events = [e for e in body.get("events", []) if isinstance(e, dict)]
        if field is not None and re.fullmatch(r"events\[\d+\]\.new_video", field):
            return any(e.get("kind") == "remix" and e.get("new_video") == e.get("video") for e in events)
        return field is not None and re.fullmatch(r"events\[\d+\]\.at", field) is not None
    if path == "/v1/videos":
        videos = [v for v in body.get("videos", []) if isinstance(v, dict)]
        if field is not None and re.fullmatch(r"videos\[\d+\]\.created_at", field):
            return True
        return field == "remix_of" and any(v.get("remix_of") == v.get("id") for v in videos)
    if path in ("/v1/model", "/v1/model/rollback") and case.method.upper() in ("PUT", "POST"):
        return field is not None and (field == "model" or field.startswith("model."))
    if path == "/v1/feed":
        return (field == "cursor" and "cursor" in body) or (field == "now" and "now" in body)
    if path == "/v1/users/{id}/preferences" and case.method.upper() == "PUT":
        return field == "now" and "now" in body
    if path == "/v1/users/{id}/preferences" and case.method.upper() == "PATCH":
        changes = [c for c in body.get("change") or [] if isinstance(c, dict)]
        if field == "change":
            return any(
                c.get("expires_at") is not None
                or (c.get("strength") is not None and c.get("list") not in ("boost", "reduce"))
                for c in changes
            )
        return field == "now" and body.get("now") is not None
    return False


@schemathesis.check
def relational_rejections_only(ctx, response, case):
    """A 422 to valid data is one of the documented relational rules."""
    if response.status_code != 422 or not _is_positive(case):
        return None
    field = _error_field(response)
    if not _explained(case, field):
        raise AssertionError(
            f"Valid data refused with 422 (field {field!r}): the schema allows what the server "
            f"refuses\n{response.text[:500]}"
        )
    return None


@schemathesis.check
class every_operation_accepts:  # noqa: N801 (check names are snake_case)
    """Every operation tested answered 2xx at least once."""

    def __init__(self):
        self.tested = set()
        self.accepted = set()

    def after_response(self, ctx, response, case):
        label = case.operation.label
        self.tested.add(label)
        if 200 <= response.status_code < 300:
            self.accepted.add(label)

    def after_run(self, ctx):
        never = sorted(self.tested - self.accepted)
        if never:
            raise AssertionError("never answered 2xx: " + ", ".join(never))


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    """An erasure of a seeded user erases the person seeded for erasures instead; a backup
    goes under the run's folder."""
    global _backups, _models, _event_keys
    if case.operation.path == "/v1/events" and isinstance(case.body, dict) and _is_positive(case):
        for e in case.body.get("events") or []:
            if isinstance(e, dict) and "key" in e:
                _event_keys += 1
                e["key"] = f"fz{_event_keys}"
        return
    if (
        case.operation.path == "/v1/model"
        and case.method.upper() == "PUT"
        and isinstance(case.body, dict)
        and _is_positive(case)
        and MODEL_FILE
    ):
        _models += 1
        if _models % 2 == 1:
            with open(MODEL_FILE, encoding="utf-8") as f:
                case.body["file"] = f.read()
        return
    if case.operation.path == "/v1/backups" and isinstance(case.body, dict) and _is_positive(case):
        if not BACKUP_ROOT:
            raise RuntimeError("FUZZ_BACKUP_ROOT is not set: no backup may go elsewhere")
        _backups += 1
        case.body["dir"] = f"{BACKUP_ROOT}/b{_backups}"
        return
    if (
        case.method.upper() == "DELETE"
        and case.operation.path == "/v1/users/{id}"
        and (case.path_parameters or {}).get("id") in SEEDED
    ):
        case.path_parameters["id"] = ERASABLE
