// The operator console end to end: the real `steerfeed serve` on a free loopback port
// with a temporary store, seeded through the API, driven in Debian's headless Chromium by
// playwright-core. Signs in, steers a person in words and sees their preview change,
// revokes a cameo and sees the video leave it; checks the session cookie and the CSRF
// rule; keeps a screenshot of every step in $CONSOLE_ARTIFACTS (default
// target/console-e2e).
//
//   STEERFEED_BIN=target/debug/steerfeed node --test tests/console/console.test.mjs

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, mkdirSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const BIN = resolve(ROOT, process.env.STEERFEED_BIN || "target/debug/steerfeed");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const ARTIFACTS = resolve(ROOT, process.env.CONSOLE_ARTIFACTS || "target/console-e2e");
const KEY = "console-e2e-admin-key-0123456789";

let server, base, dir, browser, page;

function freePort() {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.once("error", fail);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
  });
}

async function call(method, path, body, key = KEY) {
  const resp = await fetch(base + path, {
    method,
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await resp.text();
  const data = text ? JSON.parse(text) : null;
  if (!resp.ok) throw new Error(`${method} ${path}: ${resp.status} ${text}`);
  return data;
}

// The world: vera follows cody; cody posts football and cooking videos and one with
// cara's cameo (cara lets everyone use her likeness); fred posts cat videos.
const FOOTBALL = [
  "last minute winning goal in the football cup final",
  "football freestyle tricks in the park",
  "goalkeeper saves a penalty kick in the derby",
  "top ten football goals of the season",
  "football training drills for young strikers",
  "stadium crowd celebrates a football championship",
];
const COOKING = [
  "how to bake sourdough bread at home",
  "easy pasta carbonara recipe in ten minutes",
  "chopping vegetables like a professional chef",
  "homemade pizza dough and tomato sauce recipe",
  "baking chocolate chip cookies step by step",
  "a quick vegetable curry for dinner",
];
const CATS = [
  "a kitten chases a laser pointer",
  "two cats napping in the sun",
  "a cat knocks a cup off the table",
];
const CAMEO = "cameo";

function videos(now) {
  const at = (i) => new Date(now - (i + 1) * 60_000).toISOString();
  const v = (id, creator, caption, i, extra = {}) => ({ id, creator, caption, created_at: at(i), duration_s: 20, ...extra });
  return [
    ...FOOTBALL.map((c, i) => v(`football-${i}`, "cody", c, i)),
    ...COOKING.map((c, i) => v(`cooking-${i}`, "cody", c, i + 6)),
    ...CATS.map((c, i) => v(`cat-${i}`, "fred", c, i + 12)),
    v(CAMEO, "cody", "cody and cara score football goals and juggle the ball on the pitch", 20, { cameos: ["cara"] }),
  ];
}

before(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  dir = mkdtempSync(join(tmpdir(), "steerfeed-console-"));
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  server = spawn(BIN, ["serve"], {
    env: {
      ...process.env,
      STEERFEED__STORE__PATH: join(dir, "store"),
      STEERFEED__SERVER__BIND: `127.0.0.1:${port}`,
      STEERFEED__SERVER__API_KEYS: KEY,
      STEERFEED__SERVER__METRICS_SAMPLE_S: "1",
      STEERFEED__SERVER__METRICS_HISTORY_S: "3600",
      RUST_LOG: "warn",
    },
    stdio: ["ignore", "inherit", "inherit"],
  });
  const deadline = Date.now() + 300_000;
  for (;;) {
    try {
      if ((await fetch(`${base}/readyz`)).ok) break;
    } catch {}
    if (server.exitCode !== null) throw new Error(`the sidecar exited (${server.exitCode}) before it was ready`);
    if (Date.now() > deadline) throw new Error("the sidecar never became ready");
    await new Promise((r) => setTimeout(r, 200));
  }
  await call("POST", "/v1/users", {
    users: [
      { id: "vera" }, { id: "cody" }, { id: "cara" }, { id: "fred" },
      { id: "tina", age_band: "teen" },
    ],
  });
  await call("PUT", "/v1/users/cara/consent", { scope: "everyone" });
  await call("PUT", "/v1/users/vera/follows/cody");
  await call("PUT", "/v1/videos", { videos: videos(Date.now()) });

  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
  });
  const context = await browser.newContext({ viewport: { width: 1280, height: 1000 } });
  page = await context.newPage();
  page.on("dialog", (d) => d.accept());
  page.on("pageerror", (e) => { throw e; });
});

after(async () => {
  await browser?.close();
  server?.kill("SIGTERM");
  if (server && server.exitCode === null) await new Promise((r) => server.once("exit", r));
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const shot = (name) => page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });

async function previewIds() {
  await page.locator("[data-testid=preview] tr[data-video]").first().waitFor();
  return page.locator("[data-testid=preview] tr[data-video]").evaluateAll((rows) => rows.map((r) => r.dataset.video));
}

async function openPerson(id) {
  const t0 = Date.now();
  await page.goto(`${base}/console#/person/${id}`);
  await page.locator("[data-testid=account]").waitFor();
  const ids = await previewIds();
  return { ids, ms: Date.now() - t0 };
}

test("the console end to end", async (t) => {
  await t.test("signing in takes an admin key, and only that", async () => {
    await page.goto(`${base}/console`);
    await page.locator("#sign-in").waitFor();
    await page.fill("#key", "not-the-key-0000000000");
    await page.click("#sign-in button");
    await page.locator("[data-testid=error]").waitFor();
    assert.match(await page.textContent("[data-testid=error]"), /unauthorized/);
    await page.fill("#key", KEY);
    await page.click("#sign-in button");
    await page.locator("[data-testid=overview] [data-testid=stat-videos]").waitFor();
    assert.equal(await page.textContent("[data-testid=stat-videos]"), String(videos(0).length));
    assert.equal(await page.textContent("[data-testid=stat-people]"), "5");
    await shot("01-overview");

    const cookies = await page.context().cookies();
    const session = cookies.find((c) => c.name === "steerfeed_session");
    assert.ok(session, "no session cookie");
    assert.equal(session.httpOnly, true);
    assert.equal(session.sameSite, "Strict");
    assert.ok(!(await page.evaluate(() => document.cookie)).includes("steerfeed_session"));
    // A write with the cookie but without the CSRF token is refused and changes nothing.
    const refused = await page.evaluate(async () => {
      const r = await fetch("/v1/users/vera/preferences", {
        method: "PUT",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ text: "more cats" }),
      });
      return { status: r.status, body: await r.json() };
    });
    assert.equal(refused.status, 403);
    assert.equal(refused.body.error.code, "csrf");
    await assert.rejects(call("GET", "/v1/users/vera/preferences"), /404/);
  });

  let before;
  await t.test("a person's preview changes when steered in words, and applying it stores it", async () => {
    const opened = await openPerson("vera");
    before = opened.ids;
    console.log(`person view rendered in ${opened.ms} ms`);
    assert.ok(before.includes(CAMEO), `the cameo video is not in ${before}`);
    assert.ok(before.some((id) => id.startsWith("cooking-")), `no cooking in ${before}`);
    await shot("02-person");

    await page.fill("#steer-text", "only football please, no cooking");
    await page.click("#steer-preview");
    await page.locator("[data-testid=steer-summary], #steer-tried [data-testid=error]").first().waitFor();
    assert.equal(await page.locator("#steer-tried [data-testid=error]").count(), 0,
      await page.textContent("#steer-tried"));
    const steered = await previewIds();
    assert.notDeepEqual(steered, before);
    assert.ok(steered.length > 0);
    assert.ok(steered.every((id) => !id.startsWith("cooking-") && !id.startsWith("cat-")), `steered: ${steered}`);
    assert.ok(steered.includes(CAMEO), `steered: ${steered}`);
    // Previewed only: nothing stored yet.
    await assert.rejects(call("GET", "/v1/users/vera/preferences"), /404/);
    await shot("03-steer-preview");

    await page.click("#steer-apply");
    await page.locator("#applied-note:has-text('Applied')").waitFor();
    const stored = await call("GET", "/v1/users/vera/preferences");
    assert.equal(stored.text, "only football please, no cooking");
    assert.deepEqual(await previewIds(), steered);
    assert.ok((await page.locator("#prefs-summary li").count()) > 0);
    await shot("04-steer-applied");
  });

  await t.test("revoking a cameo takes the video out of the preview", async () => {
    await page.goto(`${base}/console#/video/${CAMEO}?user=vera`);
    await page.locator("[data-testid=verdict-text]").waitFor();
    assert.match(await page.textContent("[data-testid=verdict-text]"), /^servable/);
    const row = page.locator("[data-testid=cameos] tr[data-person=cara]");
    assert.match(await row.textContent(), /allowed/);
    await shot("05-video-before");

    await page.click("[data-revoke=cara]");
    await page.locator("[data-testid=cameos] tr[data-person=cara] td.bad").waitFor();
    await page.locator("[data-testid=verdict-text]").waitFor();
    assert.match(await page.textContent("[data-testid=verdict-text]"), /not servable/);
    assert.match(await page.textContent("[data-testid=removed-by]"), /consent/);
    await shot("06-video-revoked");

    const { ids } = await openPerson("vera");
    assert.ok(!ids.includes(CAMEO), `still previewed: ${ids}`);
    assert.match(await page.textContent("[data-testid=revocations]"), /none/);
    await page.goto(`${base}/console#/person/cara`);
    await page.locator("[data-testid=revocations]").waitFor();
    assert.match(await page.textContent("[data-testid=revocations]"), new RegExp(`video ${CAMEO}`));
    await shot("07-person-after-revocation");
  });

  await t.test("the playground rejects a teen's unsafe request", async () => {
    await page.goto(`${base}/console#/steer`);
    await page.fill("#play-text", "show me sexy videos and more football");
    await page.selectOption("#play-band", "teen");
    await page.click("#play-go");
    await page.locator("[data-testid=play-summary]").waitFor();
    assert.doesNotMatch(await page.textContent("[data-testid=play-rejected]"), /^none$/);
    await shot("08-playground");
  });

  await t.test("the overview charts the traffic it sampled", async () => {
    for (const user of ["tina", "fred", "cody"]) {
      await call("POST", "/v1/feed", { user, limit: 5 });
    }
    // Two samples a second apart around the requests.
    await new Promise((r) => setTimeout(r, 2500));
    await page.goto(`${base}/console#/overview`);
    await page.locator("[data-testid=stages] td").first().waitFor();
    const stages = await page.locator("[data-testid=stages] tr td:first-child").allTextContents();
    assert.ok(stages.includes("following"), `stages: ${stages}`);
    assert.ok((await page.locator("svg.chart").count()) >= 3);
    await shot("09-overview-traffic");
  });

  await t.test("signing out ends the session", async () => {
    const cookie = (await page.context().cookies()).find((c) => c.name === "steerfeed_session");
    const old = { cookie: `steerfeed_session=${cookie.value}` };
    assert.equal((await fetch(`${base}/v1/stats`, { headers: old })).status, 200);
    await page.click("#sign-out");
    await page.locator("#sign-in").waitFor();
    assert.ok(await page.locator("#nav").isHidden());
    const status = await page.evaluate(async () => (await fetch("/v1/stats")).status);
    assert.equal(status, 401);
    // The server ended it: the old cookie, sent again, is refused.
    assert.equal((await fetch(`${base}/v1/stats`, { headers: old })).status, 401);
  });

  await t.test("another site's page cannot use the session", async () => {
    await page.fill("#key", KEY);
    await page.click("#sign-in button");
    await page.locator("[data-testid=overview]").waitFor();
    const cookie = (await page.context().cookies()).find((c) => c.name === "steerfeed_session");
    const headers = { cookie: `steerfeed_session=${cookie.value}`, origin: "http://evil.example" };
    const resp = await fetch(`${base}/console/session`, { headers });
    assert.equal(resp.status, 403);
    assert.equal((await resp.json()).error.code, "cross_origin");
  });
});
