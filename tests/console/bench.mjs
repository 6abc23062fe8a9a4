// How long the console's person view takes to render, measured with the browser driver:
// from setting the page's address to the person's preview table on screen, for people
// picked with a fixed seed. One JSON object on stdout.
//
//   BASE=http://127.0.0.1:PORT KEY=... USERS=10000 SAMPLES=40 node tests/console/bench.mjs
//
// scripts/bench_console.sh starts a sidecar on a copy of the demo store and runs this.

import { chromium } from "playwright-core";

const BASE = process.env.BASE;
const KEY = process.env.KEY;
const USERS = Number(process.env.USERS || 10000);
const SAMPLES = Number(process.env.SAMPLES || 40);
if (!BASE || !KEY) throw new Error("BASE and KEY are required");

// A small seeded generator (mulberry32): the same people every run.
let seed = 42;
const rand = () => {
  seed = (seed + 0x6d2b79f5) | 0;
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
};

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const page = await browser.newPage();
page.on("dialog", (d) => d.accept());
await page.goto(`${BASE}/console`);
await page.fill("#key", KEY);
await page.click("#sign-in button");
await page.locator("[data-testid=overview]").waitFor();

const ready = "[data-testid=preview] tr[data-video], [data-testid=preview-empty], [data-testid=error]";
const times = [];
for (let i = 0; i <= SAMPLES; i++) {
  const user = `u${Math.floor(rand() * USERS)}`;
  await page.goto(`${BASE}/console#/overview`);
  await page.locator("[data-testid=overview]").waitFor();
  const t0 = performance.now();
  await page.evaluate((u) => { location.hash = `#/person/${u}`; }, user);
  await page.locator(ready).first().waitFor({ timeout: 60_000 });
  const ms = performance.now() - t0;
  if (await page.locator("[data-testid=error]").count()) throw new Error(`${user}: ${await page.textContent("[data-testid=error]")}`);
  if (i > 0) times.push(ms); // the first warms the page
}
await browser.close();
times.sort((a, b) => a - b);
const q = (p) => times[Math.min(times.length - 1, Math.floor(p * times.length))];
console.log(JSON.stringify({
  samples: times.length,
  p50_ms: +q(0.5).toFixed(1),
  p95_ms: +q(0.95).toFixed(1),
  max_ms: +times[times.length - 1].toFixed(1),
}));
