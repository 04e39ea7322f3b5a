// extapi_kit admin console: plain JS, no dependencies, no inline code (the page's CSP forbids it).
// Everything shown from the API goes through textContent; no HTML is ever parsed from data.
"use strict";

(function () {
  const API = document.querySelector('meta[name="extapi-admin-api"]').content;
  const STORE = "extapi-admin-key";
  const SVG = "http://www.w3.org/2000/svg";
  const $ = (id) => document.getElementById(id);
  const state = { keysCursor: null, auditCursor: null, auditFilters: null, autotest: false };

  // -- plumbing ---------------------------------------------------------------------------
  function adminKey() { return sessionStorage.getItem(STORE); }

  function say(text, isError) {
    const el = $("status");
    el.textContent = text || "";
    el.className = isError ? "error" : "";
  }

  async function call(method, path, body, key) {
    const headers = { "X-API-Key": key || adminKey() || "" };
    const init = { method: method, headers: headers, cache: "no-store" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const resp = await fetch(path.startsWith("/") ? path : API + "/" + path, init);
    let data = null;
    const text = await resp.text();
    if (text) { try { data = JSON.parse(text); } catch (e) { data = { detail: text }; } }
    return { status: resp.status, data: data };
  }

  async function api(method, path, body) {
    const r = await call(method, path, body);
    if (r.status === 401) { signOut(); throw new Error("the admin key was refused (401)"); }
    if (r.status >= 400) {
      const d = r.data || {};
      let msg = (d.title || "Error") + (d.detail ? ": " + d.detail : "");
      if (Array.isArray(d.errors) && d.errors.length) {
        msg += " (" + d.errors.map((e) => e.loc.join(".") + " " + e.msg).join("; ") + ")";
      }
      const err = new Error(msg + " [" + r.status + "]");
      err.status = r.status;
      throw err;
    }
    return r.data;
  }

  function guard(fn) {
    return async function (ev) {
      if (ev && ev.preventDefault) ev.preventDefault();
      try { return await fn.apply(this, arguments); } catch (e) { say(e.message, true); throw e; }
    };
  }

  function el(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }

  function button(label, onClick, cls) {
    const b = el("button", label, cls || "secondary");
    b.type = "button";
    b.addEventListener("click", () => { onClick().catch(() => {}); });
    return b;
  }

  function words(value) { return value.split(/[\s,]+/).filter(Boolean); }
  function shortTime(iso) { return iso ? iso.replace("T", " ").replace(/\.\d+Z$|Z$/, "") : ""; }
  function utc(local) { return local ? (local.length === 16 ? local + ":00" : local) + "Z" : null; }
  function qs(params) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) if (v !== null && v !== undefined && v !== "") q.set(k, v);
    const s = q.toString();
    return s ? "?" + s : "";
  }

  // -- session ----------------------------------------------------------------------------
  function signedIn() {
    const on = !!adminKey();
    $("login").hidden = on;
    $("signout").hidden = !on;
    $("session-state").textContent = on ? "Signed in (key kept in this tab only)" : "Not signed in";
    document.querySelectorAll(".needs-key").forEach((s) => { s.hidden = !on; });
    return on;
  }
  function signOut() { sessionStorage.removeItem(STORE); signedIn(); }

  // -- keys -------------------------------------------------------------------------------
  function showSecret(secret) {
    $("secret-value").textContent = secret;
    $("secret-box").hidden = false;
  }

  const createKey = guard(async function () {
    const f = $("key-form").elements;
    const body = { name: f.name.value.trim(), scopes: words(f.scopes.value) };
    if (f.owner.value.trim()) body.owner = f.owner.value.trim();
    if (f.expires_in.value.trim()) body.expires_in = f.expires_in.value.trim();
    const out = await api("POST", "keys", body);
    showSecret(out.secret);
    say("Created key " + out.key.id + ". Copy the secret now.");
    $("key-form").reset();
    await loadKeys();
    return out;
  });

  function keyRow(k) {
    const tr = el("tr");
    const idCell = el("td"); idCell.appendChild(el("code", k.id)); tr.appendChild(idCell);
    tr.appendChild(el("td", k.name));
    tr.appendChild(el("td", k.status, "status-" + k.status));
    tr.appendChild(el("td", (k.scopes || []).join(" ")));
    tr.appendChild(el("td", shortTime(k.last_used_at)));
    const act = el("td", null, "actions");
    act.appendChild(button("Usage", () => drawUsage(k.id)));
    act.appendChild(button("Audit", () => { $("audit-form").elements.key_id.value = k.id; return searchAudit(); }));
    if (k.status === "active") act.appendChild(button("Rotate", () => rotateKey(k.id)));
    if (k.status !== "revoked") act.appendChild(button("Revoke", () => revokeKey(k.id), "danger"));
    tr.appendChild(act);
    return tr;
  }

  const loadKeys = guard(async function (more) {
    const cursor = more === true ? state.keysCursor : null;
    const page = await api("GET", "keys" + qs({ limit: 50, cursor: cursor }));
    const body = $("key-rows");
    if (!cursor) body.replaceChildren();
    page.data.forEach((k) => body.appendChild(keyRow(k)));
    state.keysCursor = page.next_cursor;
    $("keys-more").hidden = !page.has_more;
    return page;
  });

  const rotateKey = guard(async function (id) {
    let grace = "0";
    if (!state.autotest) {
      grace = window.prompt("Grace period for the old key (e.g. 24h, 0 = end now):", "24h");
      if (grace === null) return null;
    }
    const out = await api("POST", "keys/" + encodeURIComponent(id) + "/rotate", { grace: grace || "0" });
    showSecret(out.secret);
    say("Rotated " + id + " to " + out.key.id + ". Copy the new secret now.");
    await loadKeys();
    return out;
  });

  const revokeKey = guard(async function (id) {
    if (!state.autotest && !window.confirm("Revoke " + id + " now? Calls with it will fail at once.")) return null;
    const out = await api("POST", "keys/" + encodeURIComponent(id) + "/revoke");
    say("Revoked " + id + ".");
    await loadKeys();
    return out;
  });

  // -- usage chart ------------------------------------------------------------------------
  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  const drawUsage = guard(async function (id) {
    const u = await api("GET", "keys/" + encodeURIComponent(id) + "/usage?minutes=60");
    $("usage-key").textContent = id;
    const chart = $("usage-chart");
    chart.replaceChildren();
    const W = 600, H = 160, left = 30, bottom = 20, top = 8;
    const n = u.buckets.length;
    const peak = Math.max(1, ...u.buckets.map((b) => b.requests));
    const bw = (W - left - 4) / n;
    const scale = (H - bottom - top) / peak;
    chart.appendChild(svg("line", { x1: left, y1: H - bottom, x2: W, y2: H - bottom, class: "axis" }));
    chart.appendChild(svg("line", { x1: left, y1: top, x2: left, y2: H - bottom, class: "axis" }));
    chart.appendChild(svg("text", { x: 2, y: top + 8 }, String(peak)));
    chart.appendChild(svg("text", { x: 2, y: H - bottom }, "0"));
    u.buckets.forEach((b, i) => {
      const x = left + 2 + i * bw;
      const h = b.requests * scale, r = b.rejections * scale;
      if (h > 0) {
        const bar = svg("rect", { x: x, y: H - bottom - h, width: Math.max(1, bw - 1), height: h, class: "req" });
        bar.appendChild(svg("title", {}, shortTime(b.start) + ": " + b.requests + " requests, " + b.rejections + " rejected"));
        chart.appendChild(bar);
      }
      if (r > 0) chart.appendChild(svg("rect", { x: x, y: H - bottom - r, width: Math.max(1, bw - 1), height: r, class: "rej" }));
      if (i % 15 === 0) chart.appendChild(svg("text", { x: x, y: H - 6 }, shortTime(b.start).slice(11, 16)));
    });
    let summary = u.requests + " requests, " + u.rejections + " rejected (" + u.rate_limited + " rate-limited) in the last hour";
    if (u.last_rate_limit) summary += "; last decision: " + u.last_rate_limit.remaining + " of " + u.last_rate_limit.limit + " left (" + u.last_rate_limit.policy + ")";
    if (u.truncated) summary += " (partial: too many records)";
    $("usage-summary").textContent = summary + ".";
    return u;
  });

  // -- webhooks ---------------------------------------------------------------------------
  const loadEndpoints = guard(async function () {
    let page;
    try { page = await api("GET", "webhooks/endpoints"); } catch (e) {
      if (e.status === 404) { $("webhooks").remove(); return null; }
      throw e;
    }
    const body = $("endpoint-rows");
    body.replaceChildren();
    page.data.forEach((ep) => {
      const tr = el("tr");
      const idCell = el("td"); idCell.appendChild(el("code", ep.id)); tr.appendChild(idCell);
      tr.appendChild(el("td", ep.url));
      tr.appendChild(el("td", ep.enabled ? "yes" : "no (" + (ep.disabled_reason || "") + ")"));
      tr.appendChild(el("td", (ep.event_types || []).join(" ") || "all"));
      const act = el("td", null, "actions");
      act.appendChild(button("Test", () => testEndpoint(ep.id)));
      act.appendChild(button("Deliveries", () => { $("delivery-form").elements.endpoint_id.value = ep.id; return loadDeliveries(); }));
      act.appendChild(button("Remove", () => removeEndpoint(ep.id), "danger"));
      tr.appendChild(act);
      body.appendChild(tr);
    });
    return page;
  });

  const addEndpoint = guard(async function () {
    const f = $("endpoint-form").elements;
    const out = await api("POST", "webhooks/endpoints", { url: f.url.value.trim(), event_types: words(f.event_types.value) });
    showSecret(out.secret);
    say("Added endpoint " + out.endpoint.id + ". Copy its signing secret now.");
    $("endpoint-form").reset();
    await loadEndpoints();
    return out;
  });

  const testEndpoint = guard(async function (id) {
    const r = await api("POST", "webhooks/endpoints/" + encodeURIComponent(id) + "/test");
    say("Test ping to " + id + ": " + (r.ok ? "OK " : "FAILED ") + (r.status || r.error || "") + " in " + Math.round(r.duration * 1000) + " ms", !r.ok);
    return r;
  });

  const removeEndpoint = guard(async function (id) {
    if (!state.autotest && !window.confirm("Remove endpoint " + id + "?")) return;
    await api("DELETE", "webhooks/endpoints/" + encodeURIComponent(id));
    say("Removed " + id + ".");
    await loadEndpoints();
  });

  const loadDeliveries = guard(async function () {
    const f = $("delivery-form").elements;
    const page = await api("GET", "webhooks/deliveries" + qs({ endpoint_id: f.endpoint_id.value.trim(), status: f.status.value, limit: 200 }));
    const body = $("delivery-rows");
    body.replaceChildren();
    page.data.forEach((d) => {
      const tr = el("tr");
      const idCell = el("td"); idCell.appendChild(el("code", d.id)); tr.appendChild(idCell);
      tr.appendChild(el("td", d.endpoint_id));
      tr.appendChild(el("td", d.status));
      tr.appendChild(el("td", d.attempts));
      tr.appendChild(el("td", d.last_error || ""));
      const act = el("td", null, "actions");
      act.appendChild(button("Attempts", () => showAttempts(d.id)));
      act.appendChild(button("Replay", () => replayDelivery(d.id)));
      tr.appendChild(act);
      body.appendChild(tr);
    });
    say(page.data.length + " deliveries.");
    return page;
  });

  const showAttempts = guard(async function (id) {
    const page = await api("GET", "webhooks/deliveries/" + encodeURIComponent(id) + "/attempts");
    $("attempts").textContent = page.data.map((a) =>
      new Date(a.time * 1000).toISOString() + "  " + (a.status || a.error) + "  " + Math.round(a.duration * 1000) + " ms  " + (a.response_excerpt || "")
    ).join("\n") || "No attempts yet.";
  });

  const replayDelivery = guard(async function (id) {
    const d = await api("POST", "webhooks/deliveries/" + encodeURIComponent(id) + "/replay");
    say("Delivery " + d.id + " requeued.");
    await loadDeliveries();
  });

  // -- audit ------------------------------------------------------------------------------
  const searchAudit = guard(async function (more) {
    const f = $("audit-form").elements;
    if (more !== true) {
      state.auditFilters = { key_id: f.key_id.value.trim(), route: f.route.value.trim(), since: utc(f.since.value), until: utc(f.until.value) };
      state.auditCursor = null;
    }
    const params = Object.assign({ limit: 100, cursor: state.auditCursor }, state.auditFilters);
    const page = await api("GET", "audit" + qs(params));
    const body = $("audit-rows");
    if (more !== true) body.replaceChildren();
    page.data.forEach((r) => {
      const tr = el("tr");
      tr.dataset.keyId = r.key_id || "";
      tr.appendChild(el("td", shortTime(r.timestamp)));
      tr.appendChild(el("td", r.key_id || ""));
      tr.appendChild(el("td", r.method));
      tr.appendChild(el("td", r.route || r.path));
      tr.appendChild(el("td", r.status));
      tr.appendChild(el("td", r.rejection || ""));
      tr.appendChild(el("td", Math.round(r.latency_ms)));
      body.appendChild(tr);
    });
    state.auditCursor = page.next_cursor;
    $("audit-more").hidden = !page.has_more;
    return page;
  });

  // -- copy -------------------------------------------------------------------------------
  async function copySecret() {
    const text = $("secret-value").textContent;
    try { await navigator.clipboard.writeText(text); say("Copied."); } catch (e) {
      const range = document.createRange();
      range.selectNodeContents($("secret-value"));
      const sel = window.getSelection(); sel.removeAllRanges(); sel.addRange(range);
      say("Clipboard not available here: the secret is selected, press Ctrl+C.");
    }
  }

  // -- scripted self-test (?autotest=1#key=<admin key>), used by the headless browser test ---
  async function autotest(params) {
    const out = { ok: false, steps: {} };
    const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
    try {
      state.autotest = true;
      sessionStorage.setItem(STORE, params.get("key"));
      signedIn();
      const f = $("key-form").elements;
      f.name.value = "autotest"; f.scopes.value = params.get("scopes") || "";
      const created = await createKey();
      const secret = $("secret-value").textContent;
      out.steps.created = created.key.id;
      out.steps.secret_shown = secret === created.secret && !$("secret-box").hidden;
      const target = params.get("call") || API + "/keys";
      out.steps.call_status = (await call("GET", target, undefined, secret)).status;
      $("audit-form").elements.key_id.value = created.key.id;
      let seen = 0;
      for (let i = 0; i < 20 && !seen; i++) {
        const page = await searchAudit();
        seen = page.data.filter((r) => r.key_id === created.key.id).length;
        if (!seen) await sleep(250);
      }
      out.steps.audit_rows = document.querySelectorAll('#audit-rows tr[data-key-id="' + created.key.id + '"]').length;
      const usage = await drawUsage(created.key.id);
      out.steps.usage_requests = usage.requests;
      out.steps.chart_bars = $("usage-chart").querySelectorAll("rect").length;
      const revoked = await revokeKey(created.key.id);
      out.steps.revoked = revoked.status;
      out.steps.after_revoke_status = (await call("GET", target, undefined, secret)).status;
      out.ok = out.steps.secret_shown && out.steps.audit_rows > 0 && out.steps.revoked === "revoked" && out.steps.after_revoke_status === 401;
    } catch (e) {
      out.error = String(e && e.message ? e.message : e);
    }
    const res = $("autotest-result");
    res.textContent = JSON.stringify(out);
    res.dataset.done = "1";
    res.hidden = false;
  }

  // -- wiring -----------------------------------------------------------------------------
  function start() {
    $("login-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      sessionStorage.setItem(STORE, $("login-key").value.trim());
      $("login-key").value = "";
      if (signedIn()) refresh();
    });
    $("signout").addEventListener("click", signOut);
    $("key-form").addEventListener("submit", (ev) => { createKey(ev).catch(() => {}); });
    $("keys-more").addEventListener("click", () => { loadKeys(true).catch(() => {}); });
    $("secret-copy").addEventListener("click", copySecret);
    $("secret-dismiss").addEventListener("click", () => { $("secret-value").textContent = ""; $("secret-box").hidden = true; });
    $("endpoint-form").addEventListener("submit", (ev) => { addEndpoint(ev).catch(() => {}); });
    $("delivery-form").addEventListener("submit", (ev) => { loadDeliveries(ev).catch(() => {}); });
    $("audit-form").addEventListener("submit", (ev) => { searchAudit(ev).catch(() => {}); });
    $("audit-more").addEventListener("click", () => { searchAudit(true).catch(() => {}); });
    const query = new URLSearchParams(location.search);
    const fragment = new URLSearchParams(location.hash.slice(1));
    if (query.get("autotest") === "1" && fragment.get("key")) {
      history.replaceState(null, "", location.pathname);  // drop the key from the address bar
      autotest(fragment);
      return;
    }
    if (signedIn()) refresh();
  }

  function refresh() {
    loadKeys().catch(() => {});
    loadEndpoints().catch(() => {});
    searchAudit().catch(() => {});
  }

  start();
})();
