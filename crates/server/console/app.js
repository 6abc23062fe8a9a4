// The steerfeed operator console: plain JavaScript, no build step. Every page is built
// with DOM calls and textContent (never HTML from data), and every call goes to the
// sidecar's own /v1 routes with the session cookie; writes carry the CSRF token.

const main = document.getElementById("main");
const nav = document.getElementById("nav");
let csrf = null;
let refresh = null;

// ---------------------------------------------------------------------------------
// Helpers.

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "text") el.textContent = v;
    // Through the CSSOM: the page's CSP refuses style attributes.
    else if (k === "style") el.style.cssText = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

// Replaces an element's children, skipping the absent ones (a condition that was false).
function put(el, ...nodes) {
  el.replaceChildren(...nodes.flat().filter((n) => n !== null && n !== undefined && n !== false));
}

function show(...nodes) {
  put(main, ...nodes);
}

async function api(method, path, body) {
  const headers = {};
  if (body !== undefined) headers["content-type"] = "application/json";
  if (method !== "GET" && csrf) headers["x-csrf-token"] = csrf;
  const resp = await fetch(path, {
    method,
    headers,
    credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (resp.status === 204) return null;
  const data = await resp.json().catch(() => null);
  if (!resp.ok) {
    if (resp.status === 401 && path.startsWith("/v1/")) signIn("Your session ended: sign in again.");
    const msg = data && data.error ? `${data.error.code}: ${data.error.message}` : `HTTP ${resp.status}`;
    throw new Error(msg);
  }
  return data;
}

const fmt = (n, digits = 1) =>
  n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US", { maximumFractionDigits: digits });

const enc = encodeURIComponent;

function errorBox(e) {
  return h("p", { class: "error", "data-testid": "error", text: e.message || String(e) });
}

function list(items, render) {
  if (!items || items.length === 0) return h("span", { class: "muted", text: "none" });
  return h("span", {}, items.map((i) => h("span", { class: "pill" }, render ? render(i) : String(i))));
}

function personLink(id) {
  return h("a", { href: `#/person/${enc(id)}`, text: id });
}

function videoLink(id, user) {
  const q = user ? `?user=${enc(user)}` : "";
  return h("a", { href: `#/video/${enc(id)}${q}`, text: id });
}

// ---------------------------------------------------------------------------------
// Charts: a few polylines in an SVG, no library.

function chart(title, points, series, unit) {
  const W = 360, H = 140, L = 40, B = 18, T = 8;
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("class", "chart");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  const values = points.flatMap((p) => series.map((s) => s.get(p)));
  const max = Math.max(1e-9, ...values);
  const x = (i) => L + (points.length < 2 ? 0 : (i * (W - L - 4)) / (points.length - 1));
  const y = (v) => H - B - (v / max) * (H - B - T);
  const line = (x1, y1, x2, y2, cls, colour) => {
    const l = document.createElementNS(svg.namespaceURI, "line");
    Object.entries({ x1, y1, x2, y2 }).forEach(([k, v]) => l.setAttribute(k, v));
    if (cls) l.setAttribute("class", cls);
    if (colour) l.setAttribute("stroke", colour);
    svg.append(l);
  };
  const text = (tx, ty, s) => {
    const t = document.createElementNS(svg.namespaceURI, "text");
    t.setAttribute("x", tx);
    t.setAttribute("y", ty);
    t.textContent = s;
    svg.append(t);
  };
  line(L, H - B, W, H - B, "axis");
  line(L, T, L, H - B, "axis");
  text(2, T + 8, `${fmt(max, 2)}`);
  text(2, H - B, "0");
  if (points.length) {
    const first = new Date(points[0].at * 1000), last = new Date(points[points.length - 1].at * 1000);
    text(L, H - 4, first.toLocaleTimeString());
    text(W - 60, H - 4, last.toLocaleTimeString());
  }
  for (const s of series) {
    const pl = document.createElementNS(svg.namespaceURI, "polyline");
    pl.setAttribute("fill", "none");
    pl.setAttribute("stroke", s.colour);
    pl.setAttribute("stroke-width", "1.5");
    pl.setAttribute("points", points.map((p, i) => `${x(i)},${y(s.get(p))}`).join(" "));
    svg.append(pl);
  }
  return h("div", {},
    h("h3", { text: `${title} (${unit})` }),
    svg,
    h("div", { class: "legend" }, series.map((s) => h("span", { style: `color:${s.colour}`, text: `— ${s.name}` }))));
}

// ---------------------------------------------------------------------------------
// Sign in and out.

function signIn(message) {
  csrf = null;
  nav.hidden = true;
  clearInterval(refresh);
  const key = h("input", { type: "password", id: "key", placeholder: "admin API key", size: 40, autocomplete: "off" });
  const note = h("p", { class: "muted", text: message || "Sign in with an admin API key." });
  const form = h("form", { class: "inline", id: "sign-in" }, key, h("button", { type: "submit", text: "Sign in" }));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      const s = await api("POST", "/console/session", { key: key.value });
      started(s);
    } catch (e) {
      note.className = "error";
      note.dataset.testid = "error";
      note.textContent = e.message;
    }
  });
  show(h("section", {}, h("h2", { text: "Sign in" }), note, form));
}

function started(session) {
  csrf = session.csrf;
  nav.hidden = false;
  if (!location.hash || location.hash === "#/") location.hash = "#/overview";
  else route();
}

document.getElementById("sign-out").addEventListener("click", async () => {
  try {
    await api("DELETE", "/console/session");
  } finally {
    signIn("Signed out.");
  }
});

// ---------------------------------------------------------------------------------
// Overview.

async function overview() {
  const box = h("div", { "data-testid": "overview" }, h("p", { class: "muted", text: "Loading…" }));
  show(box);
  const windowSel = h("select", { id: "window" },
    [["900", "15 min"], ["3600", "1 hour"], ["21600", "6 hours"]].map(([v, t]) => h("option", { value: v, text: t })));
  windowSel.value = sessionStorage.getItem("window") || "3600";
  const draw = async () => {
    sessionStorage.setItem("window", windowSel.value);
    let s;
    try {
      s = await api("GET", `/v1/stats?window_s=${windowSel.value}&points=60`);
    } catch (e) {
      put(box, errorBox(e));
      return;
    }
    const p = s.points;
    const totals = {};
    const proposed = {};
    let feeds = 0;
    for (const pt of p) {
      const n = pt.feeds_per_s * pt.seconds;
      feeds += n;
      for (const [name, c] of Object.entries(pt.candidates_per_feed)) proposed[name] = (proposed[name] || 0) + c * n;
      for (const [name, l] of Object.entries(pt.stages)) {
        const t = (totals[name] = totals[name] || { count: 0, sum: 0, p99: 0 });
        t.count += l.count;
        t.sum += l.mean_ms * l.count;
        t.p99 = Math.max(t.p99, l.p99_ms);
      }
    }
    const last = p.length ? p[p.length - 1] : null;
    put(box, 
      h("section", {},
        h("h2", { text: "Now" }),
        h("div", { class: "cards" },
          [["Videos", s.videos, "videos"], ["People", s.people, "people"], ["Events logged", s.events, "events"],
           ["Indexed videos", s.indexed, "indexed"],
           ["Events / s", last ? last.events_per_s : null, "events-per-s"],
           ["Feeds / s", last ? last.feeds_per_s : null, "feeds-per-s"]]
            .map(([t, n, id]) => h("div", { class: "card" }, h("div", { class: "muted", text: t }),
              h("div", { class: "n", "data-testid": `stat-${id}`, text: fmt(n, 2) }))))),
      h("section", {},
        h("h2", {}, "Last ", windowSel, h("span", { class: "muted", text: ` (a point every ${fmt((p[0] || {}).seconds || s.sample_s, 0)} s)` })),
        p.length < 1
          ? h("p", { class: "muted", text: `No history yet: the sidecar samples its metrics every ${s.sample_s} s.` })
          : h("div", { class: "charts" },
              chart("Events", p, [{ name: "events/s", colour: "#2f5bd3", get: (q) => q.events_per_s }], "per second"),
              chart("Feed requests", p, [{ name: "feeds/s", colour: "#1b7f3b", get: (q) => q.feeds_per_s }], "per second"),
              chart("Feed latency", p, [
                { name: "p50", colour: "#2f5bd3", get: (q) => q.feed.p50_ms },
                { name: "p99", colour: "#b3261e", get: (q) => q.feed.p99_ms },
                { name: "mean", colour: "#888", get: (q) => q.feed.mean_ms },
              ], "ms"))),
      h("section", {},
        h("h2", { text: "Pipeline stages and sources over the window" }),
        h("table", { "data-testid": "stages" },
          h("tr", {}, h("th", { text: "stage" }), h("th", { class: "num", text: "calls" }),
            h("th", { class: "num", text: "mean ms" }), h("th", { class: "num", text: "worst p99 ms" }),
            h("th", { class: "num", text: "candidates / feed" })),
          Object.entries(totals).sort((a, b) => b[1].sum - a[1].sum).map(([name, t]) =>
            h("tr", {}, h("td", { text: name }), h("td", { class: "num", text: fmt(t.count, 0) }),
              h("td", { class: "num", text: fmt(t.count ? t.sum / t.count : 0, 3) }),
              h("td", { class: "num", text: fmt(t.p99, 2) }),
              h("td", { class: "num", text: feeds && name in proposed ? fmt(proposed[name] / feeds, 1) : "" }))))));
  };
  windowSel.addEventListener("change", draw);
  await draw();
  refresh = setInterval(() => location.hash.startsWith("#/overview") && draw(), 10000);
}

// ---------------------------------------------------------------------------------
// A person.

function lookupForm(label, id, value, go) {
  const input = h("input", { id, value: value || "", placeholder: label, size: 30 });
  const form = h("form", { class: "inline" }, input, h("button", { type: "submit", text: "Open" }));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    if (input.value.trim()) go(input.value.trim());
  });
  return form;
}

const TERMS = ["action_value", "tie", "steering", "consumption_cost", "freshness", "cold_start", "wellbeing"];

function previewTable(preview, user) {
  const items = preview.page.items;
  const cards = preview.page.cards || [];
  return h("div", {},
    cards.length ? h("p", { "data-testid": "preview-cards" }, "Cards: ", list(cards, (c) => `${c.kind} at ${c.position}: ${c.message}`)) : null,
    items.length === 0 ? h("p", { class: "muted", "data-testid": "preview-empty", text: "An empty page." }) : null,
    h("table", { "data-testid": "preview" },
      h("tr", {}, h("th", { text: "#" }), h("th", { text: "video" }), h("th", { text: "source" }),
        h("th", { class: "num", text: "score" }), ...TERMS.map((t) => h("th", { class: "num", text: t })),
        h("th", { text: "why" })),
      items.map((it, i) =>
        h("tr", { "data-video": it.video },
          h("td", { text: i + 1 }), h("td", {}, videoLink(it.video, user)), h("td", { text: it.source }),
          h("td", { class: "num", text: fmt(it.score, 3) }),
          ...TERMS.map((t) => h("td", { class: "num", text: fmt(it.breakdown[t], 3) })),
          h("td", { text: it.explanation.text })))),
    h("p", { class: "muted" }, "Stages: ",
      preview.stages.map((s) => `${s.stage} ${s.input}→${s.output} (${fmt(s.micros / 1000, 2)} ms)`).join(" · ")));
}

async function person(id) {
  show(h("section", {}, h("h2", { text: "Person" }), lookupForm("user id", "person-id", id, (v) => (location.hash = `#/person/${enc(v)}`))));
  if (!id) return;
  const box = h("div", {}, h("p", { class: "muted", text: "Loading…" }));
  main.append(box);
  let p, preview;
  try {
    [p, preview] = await Promise.all([
      api("GET", `/v1/users/${enc(id)}`),
      api("POST", `/v1/users/${enc(id)}/preview`, { limit: 20 }),
    ]);
  } catch (e) {
    put(box, errorBox(e));
    return;
  }
  const w = p.wellbeing, lim = p.limits;
  const prefs = p.preferences;
  const previewBox = h("div", { id: "preview-box" }, previewTable(preview, id));
  const text = h("textarea", { id: "steer-text", placeholder: "Try preferences in words, e.g. \"only cooking, nothing about politics\"" });
  const applyBtn = h("button", { type: "button", id: "steer-apply", class: "secondary", disabled: true, text: "Apply to this person" });
  const tried = h("div", { id: "steer-tried" });
  const previewBtn = h("button", { type: "button", id: "steer-preview", text: "Preview" });
  let previewedText = null;
  previewBtn.addEventListener("click", async () => {
    if (!text.value.trim()) return;
    try {
      const q = await api("POST", `/v1/users/${enc(id)}/preview`, { limit: 20, text: text.value });
      previewedText = text.value;
      applyBtn.disabled = false;
      put(tried, 
        h("p", { "data-testid": "steer-summary" }, "This text would apply: ", list(q.summary)),
        (q.page.applied.rejected || []).length ? h("p", { class: "bad", "data-testid": "steer-rejected" }, "Rejected: ",
          list(q.page.applied.rejected, (r) => `${r.phrase || r.topic || r.label}: ${r.reason}`)) : null,
        (q.page.applied.unclear || []).length ? h("p", { "data-testid": "steer-unclear" }, "Unclear: ",
          list(q.page.applied.unclear, (u) => `${u.phrase} (${u.reason})`)) : null,
        h("p", { class: "muted", text: "Preview with this text (not applied yet):" }));
      put(previewBox, previewTable(q, id));
    } catch (e) {
      put(tried, errorBox(e));
    }
  });
  applyBtn.addEventListener("click", async () => {
    if (!previewedText || !confirm(`Replace ${id}'s preferences with:\n\n${previewedText}`)) return;
    try {
      await api("PUT", `/v1/users/${enc(id)}/preferences`, { text: previewedText });
      await person(id);
      main.querySelector("#applied-note")?.replaceChildren("Applied.");
    } catch (e) {
      put(tried, errorBox(e));
    }
  });
  const revoked = [...p.revoked_videos.map((v) => ["video", v]), ...p.revoked_creators.map((c) => ["creator", c])];
  put(box, 
    h("div", { class: "grid2" },
      h("section", { "data-testid": "account" },
        h("h2", { text: `${p.user.id}` }),
        h("p", {}, `Age band ${p.user.age_band}, time zone ${p.user.time_zone}.`),
        h("h3", { text: "Wellbeing today" }),
        h("table", {},
          h("tr", {}, h("td", { text: "minutes today" }), h("td", { "data-testid": "minutes-today", text: `${fmt(w.minutes_today)}${lim.daily_minutes ? ` of ${lim.daily_minutes}` : ""}` })),
          h("tr", {}, h("td", { text: "items today" }), h("td", { text: `${w.items_today}${lim.daily_items ? ` of ${lim.daily_items}` : ""}` })),
          h("tr", {}, h("td", { text: "items this session" }), h("td", { text: `${w.session_items}${lim.scroll_cap ? ` of ${lim.scroll_cap}` : ""}` })),
          h("tr", {}, h("td", { text: "passive streak" }), h("td", { text: w.passive_streak })),
          h("tr", {}, h("td", { text: "bedtime" }), h("td", { text: lim.bedtime_start ? `${lim.bedtime_start}–${lim.bedtime_end}` : "none" }))),
        h("h3", { text: "Parental controls" }),
        h("p", {}, `Personalization ${p.parental.personalization ? "on" : "off"}; scroll cap ${p.parental.scroll_cap ?? "none"}; daily limit ${p.parental.daily_limit_minutes ?? "default"}; cameo scope ${p.parental.cameo_scope ?? "own choice"}.`)),
      h("section", { "data-testid": "relations" },
        h("h2", { text: "Relations and consent" }),
        h("p", {}, `Follows (${p.following.length}): `, list(p.following, personLink)),
        h("p", {}, `Followers: ${p.followers}. Blocked: `, list(p.blocked, personLink), " Muted: ", list(p.muted, personLink)),
        h("p", { "data-testid": "consent" }, `Likeness: scope ${p.consent_scope}; approved creators `, list(p.approved, personLink)),
        h("p", { "data-testid": "revocations" }, "Revoked: ", list(revoked, ([k, v]) => `${k} ${v}`)))),
    h("section", { "data-testid": "preferences" },
      h("h2", { text: "Preferences in force" }),
      prefs ? h("div", {}, h("p", { class: "muted", text: `“${prefs.text}”` }), h("ul", { id: "prefs-summary" }, prefs.summary.map((s) => h("li", { text: s }))))
        : h("p", { class: "muted", id: "prefs-summary", text: "none" }),
      h("p", { id: "applied-note", class: "ok" }),
      h("h3", { text: "Try preferences in words" }),
      text, h("div", { class: "inline" }, previewBtn, " ", applyBtn), tried),
    h("section", {}, h("h2", { text: "Next page (preview: nothing is served or counted)" }), previewBox));
}

// ---------------------------------------------------------------------------------
// A video.

async function video(id, user) {
  show(h("section", {}, h("h2", { text: "Video" }), lookupForm("video id", "video-id", id, (v) => (location.hash = `#/video/${enc(v)}`))));
  if (!id) return;
  const box = h("div", {}, h("p", { class: "muted", text: "Loading…" }));
  main.append(box);
  let v;
  try {
    v = await api("GET", `/v1/videos/${enc(id)}`);
  } catch (e) {
    put(box, errorBox(e));
    return;
  }
  const verdictBox = h("div", { id: "verdict" });
  const who = h("input", { id: "verdict-user", value: user || "", placeholder: "user id", size: 24 });
  const check = async () => {
    if (!who.value.trim()) return;
    try {
      const r = await api("GET", `/v1/users/${enc(who.value.trim())}/explain/${enc(id)}`);
      put(verdictBox, 
        h("p", { class: r.servable ? "ok" : "bad", "data-testid": "verdict-text", text: r.text }),
        h("table", {},
          h("tr", {}, h("td", { text: "proposed by" }), h("td", {}, list(r.proposed_by, (s) => `${s.source} (#${s.rank + 1})`))),
          h("tr", {}, h("td", { text: "removed by" }), h("td", { "data-testid": "removed-by" }, list(r.removed_by))),
          h("tr", {}, h("td", { text: "gate" }), h("td", { text: r.stopped_by ? `${r.stopped_by}: ${r.card.message}` : "none" })),
          h("tr", {}, h("td", { text: "score" }), h("td", { text: `${fmt(r.score, 3)} = ${TERMS.map((t) => `${t} ${fmt(r.breakdown[t], 3)}`).join(", ")}` })),
          r.explanation ? h("tr", {}, h("td", { text: "why" }), h("td", { text: r.explanation.text })) : null));
    } catch (e) {
      put(verdictBox, errorBox(e));
    }
  };
  const form = h("form", { class: "inline" }, "Could ", who, " be served it? ", h("button", { type: "submit", text: "Check" }));
  form.addEventListener("submit", (ev) => { ev.preventDefault(); check(); });
  const c = v.counts;
  put(box, 
    h("section", { "data-testid": "video" },
      h("h2", { text: v.video.id }),
      h("p", { text: v.video.caption || "(no caption)" }),
      h("p", {}, "By ", personLink(v.video.creator), `, ${fmt(v.video.duration_s)} s, created ${v.video.created_at}`,
        v.video.deleted ? h("span", { class: "bad", text: " — deleted" }) : null,
        v.video.remix_of ? h("span", {}, ", a remix of ", videoLink(v.video.remix_of)) : null),
      h("p", {}, "Topics: ", list(v.video.topics), " Safety: ", list(v.video.safety))),
    h("section", {},
      h("h2", { text: "Counts (time-decayed)" }),
      h("table", {}, h("tr", {}, Object.keys(c).map((k) => h("th", { class: "num", text: k }))),
        h("tr", {}, Object.values(c).map((n) => h("td", { class: "num", text: fmt(n, 2) }))))),
    h("section", { "data-testid": "cameos" },
      h("h2", { text: "Cameos and consent" }),
      v.cameos.length === 0 ? h("p", { class: "muted", text: "No cameos." }) :
        h("table", {}, v.cameos.map((cm) => {
          const btn = h("button", { type: "button", class: "secondary", "data-revoke": cm.person, text: `Revoke for ${cm.person}` });
          btn.addEventListener("click", async () => {
            if (!confirm(`Record that ${cm.person} withdraws their likeness from ${id}? Revocations are permanent.`)) return;
            try {
              await api("POST", `/v1/users/${enc(cm.person)}/consent/revocations`, { video: id });
              await video(id, who.value.trim());
            } catch (e) {
              btn.replaceWith(errorBox(e));
            }
          });
          return h("tr", { "data-person": cm.person },
            h("td", {}, personLink(cm.person)),
            h("td", { class: cm.allowed ? "ok" : "bad", text: cm.allowed ? "allowed" : "not allowed" }),
            h("td", { text: cm.text }),
            h("td", {}, cm.allowed && cm.person !== v.video.creator ? btn : null));
        }))),
    h("section", {}, h("h2", { text: "For one person" }), form, verdictBox));
  if (who.value) await check();
}

// ---------------------------------------------------------------------------------
// The steering playground.

function steer() {
  const text = h("textarea", { id: "play-text", placeholder: "Preferences in words" });
  const band = h("select", { id: "play-band" }, h("option", { value: "adult", text: "adult" }), h("option", { value: "teen", text: "teen" }));
  const out = h("div", { id: "play-out" });
  const go = h("button", { type: "button", id: "play-go", text: "Compile" });
  go.addEventListener("click", async () => {
    try {
      const r = await api("POST", "/v1/steering/parse", { text: text.value, age_band: band.value });
      const k = r.constraints;
      const concept = (c) => `${c.phrase || c.topic}${c.strength !== undefined ? ` ×${fmt(c.strength, 2)}` : ""}`;
      put(out, 
        h("h3", { text: "In words" }), h("ul", { "data-testid": "play-summary" }, r.summary.map((s) => h("li", { text: s }))),
        h("table", {},
          [["boost", k.boost], ["reduce", k.reduce], ["exclude", k.exclude], ["only", k.only]].map(([n, xs]) =>
            h("tr", {}, h("td", { text: n }), h("td", {}, list(xs, concept)))),
          h("tr", {}, h("td", { text: "following" }), h("td", { text: k.following ? JSON.stringify(k.following) : "–" })),
          h("tr", {}, h("td", { text: "other" }), h("td", { text: JSON.stringify({ freshness: k.freshness, max_duration_s: k.max_duration_s, remix: k.remix, friends_cameos: k.friends_cameos, expires_at: k.expires_at }) }))),
        h("h3", { text: "Rejected" }),
        h("div", { "data-testid": "play-rejected" }, list(k.rejected, (x) => `${x.phrase || x.topic || x.label}: ${x.reason}`)),
        h("h3", { text: "Unclear" }),
        h("div", { "data-testid": "play-unclear" }, list(k.unclear, (x) => `${x.phrase} (${x.reason}${x.suggestion ? `, did you mean ${x.suggestion}?` : ""})`)));
    } catch (e) {
      put(out, errorBox(e));
    }
  });
  show(h("section", {}, h("h2", { text: "Steering playground" }),
    h("p", { class: "muted", text: "Compiles text as the engine would for a viewer of this age band. Nothing is stored." }),
    text, h("div", { class: "inline" }, "Viewer: ", band, " ", go), out));
}

// ---------------------------------------------------------------------------------
// Routing.

function route() {
  if (!csrf) return;
  clearInterval(refresh);
  const [path, query] = location.hash.slice(1).split("?");
  const decode = (p) => {
    try {
      return decodeURIComponent(p);
    } catch {
      return p; // a malformed escape: looked up as typed, and reported as not found
    }
  };
  const parts = path.split("/").filter(Boolean).map(decode);
  const params = new URLSearchParams(query || "");
  for (const a of nav.querySelectorAll("a")) a.classList.toggle("active", location.hash.startsWith(a.getAttribute("href")));
  switch (parts[0]) {
    case "person": return person(parts[1]);
    case "video": return video(parts[1], params.get("user"));
    case "steer": return steer();
    default: return overview();
  }
}

window.addEventListener("hashchange", route);

(async () => {
  try {
    started(await api("GET", "/console/session"));
  } catch {
    signIn();
  }
})();
