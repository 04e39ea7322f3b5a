// extapi_kit admin console: plain JS, no dependencies, no inline code (the page's CSP forbids it).
// Everything shown from the API goes through textContent; no HTML is ever parsed from data.
"use strict";

(function () {
  const API = document.querySelector('meta[name="extapi-admin-api"]').content;
  // "1" when the admin API has plan routes (its key service has plans): no request to a route
  // that is not there.
  const PLANS = (document.querySelector('meta[name="extapi-admin-plans"]') || {}).content === "1";
  const STORE = "extapi-admin-key";
  const SVG = "http://www.w3.org/2000/svg";
  const $ = (id) => document.getElementById(id);
  const state = { keysCursor: null, auditCursor: null, auditFilters: null, autotest: false, grantRows: [], editing: null };

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
        // "scopes: invalid scope ..." rather than "body.scopes Value error, invalid scope ...".
        const field = (e) => (e.loc || []).filter((p) => p !== "body" && p !== "query").join(".");
        const text = (e) => String(e.msg || "").replace(/^Value error, /, "");
        msg += " (" + d.errors.map((e) => (field(e) ? field(e) + ": " : "") + text(e)).join("; ") + ")";
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
  function count(n, one, many) { return n + " " + (n === 1 ? one : (many || one + "s")); }

  // "read=100/minute, write=10/minute" -> {read: "100/minute", write: "10/minute"}
  function readRates(value) {
    const out = {};
    for (const part of value.split(/[,;]/).map((p) => p.trim()).filter(Boolean)) {
      const at = part.indexOf("=");
      if (at < 1 || !part.slice(at + 1).trim()) throw new Error("Rate limits: write CLASS=RATE pairs separated by commas, e.g. read=100/minute, write=10/minute.");
      out[part.slice(0, at).trim()] = part.slice(at + 1).trim();
    }
    return out;
  }
  function ratesText(rates) { return Object.entries(rates || {}).map(([k, v]) => k + "=" + v).join(", "); }

  // "projects=7,9 jobs=*" -> {projects: ["7", "9"], jobs: ["*"]}
  function readGrantText(value) {
    const out = {};
    for (const part of value.split(/[\s;]+/).filter(Boolean)) {
      const at = part.indexOf("=");
      const ids = at > 0 ? part.slice(at + 1).split(",").filter(Boolean) : [];
      if (!ids.length) throw new Error("Grants: write TYPE=ID,ID pairs separated by spaces, e.g. projects=7,9 jobs=*.");
      out[part.slice(0, at)] = ids;
    }
    return out;
  }
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
  // Each card shows its own one-time secret next to the form that made it ("secret" for keys,
  // "endpoint-secret" for webhook endpoints).
  function showSecret(secret, box) {
    const id = box || "secret";
    $(id + "-value").textContent = secret;
    $(id + "-box").hidden = false;
  }

  function hideSecret(box) {
    $(box + "-value").textContent = "";
    $(box + "-box").hidden = true;
  }

  // What a person sees, not the hidden property (a stylesheet can override it).
  function isShown(node) {
    if (typeof node.getBoundingClientRect !== "function") return !node.hidden;  // node's test shim
    const r = node.getBoundingClientRect();
    return r.width > 0 && r.height > 0 && getComputedStyle(node).visibility === "visible";
  }

  // -- grants editor: one row per resource type -> ids ("*" = all) --------------------------
  function addGrantRow(type, ids) {
    const row = el("div", null, "grant-row");
    const kind = el("input");
    kind.name = "grant_type"; kind.placeholder = "resource type, e.g. projects"; kind.value = type || "";
    const values = el("input");
    values.name = "grant_ids"; values.placeholder = "ids (space separated) or *"; values.value = (ids || []).join(" ");
    const entry = { row: row, type: kind, ids: values };
    row.appendChild(kind);
    row.appendChild(values);
    row.appendChild(button("Remove", async () => { removeGrantRow(entry); }));
    $("grant-rows").appendChild(row);
    state.grantRows.push(entry);
    return entry;
  }

  function removeGrantRow(entry) {
    state.grantRows = state.grantRows.filter((e) => e !== entry);
    entry.row.remove();
  }

  function clearGrantRows() {
    state.grantRows = [];
    $("grant-rows").replaceChildren();
  }

  function readGrants() {
    const grants = {};
    for (const g of state.grantRows) {
      const type = g.type.value.trim();
      const ids = words(g.ids.value);
      if (!type && !ids.length) continue;  // an empty row is ignored
      if (!type) throw new Error("A grant row has ids but no resource type.");
      if (!ids.length) throw new Error("Grant " + type + ": give the ids, or * for all.");
      const have = grants[type] || [];
      grants[type] = have.concat(ids.filter((i) => !have.includes(i)));
    }
    return grants;
  }

  function grantsText(grants) {
    return Object.entries(grants || {}).map(([type, ids]) => type + ": " + ids.join(" ")).join("; ");
  }

  function readQuota(base) {
    const quota = Object.assign({}, base || {});
    const raw = $("key-form").elements.quota_monthly.value.trim();
    if (raw === "") { delete quota.monthly; return quota; }
    const n = Number(raw);
    if (!Number.isInteger(n) || n < 0) throw new Error("The monthly quota must be a whole number, 0 or more.");
    quota.monthly = n;
    return quota;
  }

  // -- keys: create and edit share the form ----------------------------------------------
  function endEdit() {
    state.editing = null;
    $("key-form").reset();
    clearGrantRows();
    $("key-form").elements.expires_in.hidden = false;
    $("key-submit").textContent = "Create key";
    $("key-cancel").hidden = true;
    $("key-editing").textContent = "";
  }

  const createKey = guard(async function () {
    const f = $("key-form").elements;
    // Scopes go as typed: the server applies the one scope rule (commas or spaces) and its hint.
    const body = { name: f.name.value.trim(), scopes: f.scopes.value.trim() };
    if (f.owner.value.trim()) body.owner = f.owner.value.trim();
    if (f.description.value.trim()) body.description = f.description.value.trim();
    const rates = readRates(f.rate_limits.value);
    if (Object.keys(rates).length) body.rate_limits = rates;
    const cidrs = words(f.allowed_cidrs.value);
    if (cidrs.length) body.allowed_cidrs = cidrs;
    if (f.expires_in.value.trim()) body.expires_in = f.expires_in.value.trim();
    const grants = readGrants();
    if (Object.keys(grants).length) body.grants = grants;
    const quota = readQuota(null);
    if (Object.keys(quota).length) body.quota = quota;
    if (f.plan.value.trim()) body.plan = f.plan.value.trim();
    const out = await api("POST", "keys", body);
    showSecret(out.secret, "secret");
    say("Created key " + out.key.id + ". Copy the secret now.");
    endEdit();
    await loadKeys();
    return out;
  });

  const editKey = guard(async function (id) {
    const k = await api("GET", "keys/" + encodeURIComponent(id));
    endEdit();
    const f = $("key-form").elements;
    f.name.value = k.name;
    f.scopes.value = (k.scopes || []).join(" ");
    f.owner.value = k.owner || "";
    f.description.value = k.description || "";
    f.rate_limits.value = ratesText(k.rate_limits);
    f.allowed_cidrs.value = (k.allowed_cidrs || []).join(" ");
    f.quota_monthly.value = k.quota && k.quota.monthly !== undefined ? String(k.quota.monthly) : "";
    f.plan.value = k.plan || "";
    f.expires_in.hidden = true;  // the expiry is not edited here
    Object.entries(k.grants || {}).forEach(([type, ids]) => addGrantRow(type, ids));
    state.editing = k;
    $("key-submit").textContent = "Save changes";
    $("key-cancel").hidden = false;
    $("key-editing").textContent = "Editing " + k.id;
    return k;
  });

  const saveKey = guard(async function () {
    const k = state.editing;
    const f = $("key-form").elements;
    const body = {
      name: f.name.value.trim(),
      scopes: f.scopes.value.trim(),
      owner: f.owner.value.trim() || null,
      description: f.description.value.trim(),
      rate_limits: readRates(f.rate_limits.value),
      allowed_cidrs: words(f.allowed_cidrs.value),
      grants: readGrants(),
      quota: readQuota(k.quota),
      plan: f.plan.value.trim() || null,
    };
    const out = await api("PATCH", "keys/" + encodeURIComponent(k.id), body);
    say("Saved key " + out.id + ".");
    endEdit();
    await loadKeys();
    return out;
  });

  function submitKey(ev) { return state.editing ? saveKey(ev) : createKey(ev); }

  function keyRow(k) {
    const tr = el("tr");
    const idCell = el("td"); idCell.appendChild(el("code", k.id)); tr.appendChild(idCell);
    tr.appendChild(el("td", k.name));
    tr.appendChild(el("td", k.status, "status-" + k.status));
    tr.appendChild(el("td", (k.scopes || []).join(" ")));
    tr.appendChild(el("td", grantsText(k.grants)));
    tr.appendChild(el("td", k.expires_at ? shortTime(k.expires_at) : "never"));
    tr.appendChild(el("td", shortTime(k.last_used_at)));
    const act = el("td", null, "actions");
    act.appendChild(button("Usage", () => drawUsage(k.id)));
    act.appendChild(button("Analytics", () => drawAnalytics(k.id)));
    if (k.status !== "revoked") act.appendChild(button("Edit", () => editKey(k.id)));
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
    showSecret(out.secret, "secret");
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

  // items: [{ value, bad, tip, tick }]; a bar per item, its "bad" part drawn over it in red.
  function drawBars(items, tickEvery) {
    const chart = $("usage-chart");
    chart.replaceChildren();
    const W = 600, H = 160, left = 30, bottom = 20, top = 8;
    const n = Math.max(1, items.length);
    const peak = Math.max(1, ...items.map((b) => b.value));
    const bw = (W - left - 4) / n;
    const scale = (H - bottom - top) / peak;
    chart.appendChild(svg("line", { x1: left, y1: H - bottom, x2: W, y2: H - bottom, class: "axis" }));
    chart.appendChild(svg("line", { x1: left, y1: top, x2: left, y2: H - bottom, class: "axis" }));
    chart.appendChild(svg("text", { x: 2, y: top + 8 }, String(peak)));
    chart.appendChild(svg("text", { x: 2, y: H - bottom }, "0"));
    items.forEach((b, i) => {
      const x = left + 2 + i * bw;
      const h = b.value * scale, r = Math.min(b.bad, b.value) * scale;
      if (h > 0) {
        const bar = svg("rect", { x: x, y: H - bottom - h, width: Math.max(1, bw - 1), height: h, class: "req" });
        bar.appendChild(svg("title", {}, b.tip));
        chart.appendChild(bar);
      }
      if (r > 0) chart.appendChild(svg("rect", { x: x, y: H - bottom - r, width: Math.max(1, bw - 1), height: r, class: "rej" }));
      if (i % tickEvery === 0) chart.appendChild(svg("text", { x: x, y: H - 6 }, b.tick));
    });
  }

  function sum(values) { return values.reduce((a, b) => a + b, 0); }

  function drawQuotas(quotas) {
    const box = $("usage-quotas");
    box.replaceChildren();
    quotas.forEach((q) => {
      const row = el("div", null, q.used >= q.limit ? "quota full" : "quota");
      const meter = document.createElement("progress");
      meter.max = Math.max(1, q.limit);
      meter.value = Math.min(q.used, q.limit);
      row.appendChild(el("span", (q.scope === "owner" ? "owner " : "") + q.period + " quota"));
      row.appendChild(meter);
      row.appendChild(el("span", q.used + " of " + q.limit + " used, " + q.remaining + " left (" + q.period_id + "); resets " + shortTime(q.resets_at) + " UTC"));
      box.appendChild(row);
    });
  }

  // The usage counters (daily, the source of truth) when the admin API has a tracker.
  function drawCounters(u) {
    drawBars(u.days.map((d) => {
      const rejected = sum(Object.values(d.rejected || {}));
      return {
        value: d.total,
        bad: rejected,
        tip: d.date + ": " + d.total + " requests (" + d.read + " read, " + d.write + " write), " + d.served + " served, " + rejected + " rejected",
        tick: d.date.slice(5),
      };
    }), 7);
    const t = u.totals;
    const rejected = Object.entries(t.rejected || {}).map(([slug, n]) => slug + " " + n).join(", ");
    $("usage-hint").textContent = "Requests per UTC day over the last " + u.days.length + " days (usage counters); red: rejected.";
    $("usage-summary").textContent = count(t.total, "request") + " in " + u.days.length + " days (" + t.read + " read, " + t.write + " write; " +
      t.served + " served, " + count(t.errors, "error") + (rejected ? "; rejected: " + rejected : "") + "). This month (" +
      u.month.month + "): " + count(u.month.total, "request") + ".";
    drawQuotas(u.quotas || []);
    return { source: "counters", requests: t.total, days: u.days.length, quotas: (u.quotas || []).length };
  }

  // Fallback without a tracker: the last hour per minute, derived from the audit trail.
  function drawActivity(u) {
    drawBars(u.buckets.map((b) => ({
      value: b.requests,
      bad: b.rejections,
      tip: shortTime(b.start) + ": " + b.requests + " requests, " + b.rejections + " rejected",
      tick: shortTime(b.start).slice(11, 16),
    })), 15);
    $("usage-hint").textContent = "Requests and rejections per minute over the last hour, derived from the audit trail (no usage counters configured).";
    let summary = u.requests + " requests, " + u.rejections + " rejected (" + u.rate_limited + " rate-limited) in the last hour";
    if (u.last_rate_limit) summary += "; last decision: " + u.last_rate_limit.remaining + " of " + u.last_rate_limit.limit + " left (" + u.last_rate_limit.policy + ")";
    if (u.truncated) summary += " (partial: too many records)";
    $("usage-summary").textContent = summary + ".";
    drawQuotas([]);
    return { source: "audit", requests: u.requests, days: 0, quotas: 0 };
  }

  const drawUsage = guard(async function (id) {
    const path = "keys/" + encodeURIComponent(id);
    $("usage-key").textContent = id;
    let counters = null;
    try { counters = await api("GET", path + "/usage?days=30"); } catch (e) {
      if (e.status !== 404) throw e;  // 404: no tracker (or no such key: activity says which)
    }
    if (counters) return drawCounters(counters);
    return drawActivity(await api("GET", path + "/activity?minutes=60"));
  });

  // -- key analytics (issue 20 §4) --------------------------------------------------------
  function seenRow(name, r) {
    const tr = el("tr");
    const first = el("td"); first.appendChild(el("code", r[name])); tr.appendChild(first);
    tr.appendChild(el("td", r.count));
    tr.appendChild(el("td", shortTime(r.first_seen)));
    tr.appendChild(el("td", shortTime(r.last_seen)));
    return tr;
  }

  const drawAnalytics = guard(async function (id) {
    $("analytics-key").textContent = id;
    const ips = $("analytics-ips"), agents = $("analytics-agents");
    ips.replaceChildren(); agents.replaceChildren();
    $("analytics-summary").textContent = ""; $("analytics-refused").textContent = "";
    let a;
    try { a = await api("GET", "keys/" + encodeURIComponent(id) + "/analytics"); } catch (e) {
      if (e.status !== 404) throw e;
      $("analytics-hint").textContent = "No analytics: this admin API has no key analytics configured, or the key does not exist.";
      return null;
    }
    $("analytics-hint").textContent = "Last " + a.window_days + " days since " + a.since + " (at most " + a.max_ips + " addresses and " + a.max_user_agents + " user agents per key; the busiest stay).";
    const st = a.status;
    $("analytics-summary").textContent = count(a.requests, "request") + ": " + st["2xx"] + " 2xx, " + st["3xx"] + " 3xx, " + st["4xx"] + " 4xx, " + st["5xx"] + " 5xx; error rate " + (a.error_rate * 100).toFixed(1) + "%" + (a.last_used_at ? "; last used " + shortTime(a.last_used_at) : "") + ".";
    const refused = Object.entries(a.refused).map(([reason, n]) => reason + " " + n).join(", ");
    $("analytics-refused").textContent = "Refused: " + (refused || "none") + ".";
    a.ips.forEach((r) => ips.appendChild(seenRow("ip", r)));
    a.user_agents.forEach((r) => agents.appendChild(seenRow("user_agent", r)));
    return a;
  });

  // -- plans (issue 20 §1) ----------------------------------------------------------------
  const loadPlans = guard(async function () {
    const rows = $("plan-rows");
    let page;
    try { page = await api("GET", "plans"); } catch (e) {
      if (e.status !== 404) throw e;
      rows.replaceChildren();
      $("plans-hint").textContent = "No plans: this admin API's key service has no plan store configured.";
      return null;
    }
    const details = await Promise.all(page.data.map((p) => api("GET", "plans/" + encodeURIComponent(p.name))));
    rows.replaceChildren();
    details.forEach((p) => {
      const tr = el("tr");
      const name = el("td"); name.appendChild(el("code", p.name)); tr.appendChild(name);
      tr.appendChild(el("td", ratesText(p.rate_limits) || "-"));
      tr.appendChild(el("td", ratesText(p.quota) || "-"));
      tr.appendChild(el("td", p.scopes === null ? "(no ceiling)" : (p.scopes.join(" ") || "(none)")));
      tr.appendChild(el("td", Object.values(p.policy_names || {}).join(", ") || "-"));
      tr.appendChild(el("td", (p.owners || []).join(", ") || "-"));
      rows.appendChild(tr);
    });
    return page;
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
    const body = { url: f.url.value.trim(), event_types: words(f.event_types.value) };
    if (f.description.value.trim()) body.description = f.description.value.trim();
    const grants = readGrantText(f.grants.value);
    if (Object.keys(grants).length) body.grants = grants;
    const out = await api("POST", "webhooks/endpoints", body);
    showSecret(out.secret, "endpoint-secret");
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
      const st = el("td", d.status);
      if (d.test) st.appendChild(el("span", "test ping", "badge"));
      tr.appendChild(st);
      tr.appendChild(el("td", d.attempts));
      tr.appendChild(el("td", d.last_error || ""));
      const act = el("td", null, "actions");
      act.appendChild(button("Attempts", () => showAttempts(d.id)));
      if (!d.test) act.appendChild(button("Replay", () => replayDelivery(d.id)));
      tr.appendChild(act);
      body.appendChild(tr);
    });
    $("attempts").hidden = true;
    say(count(page.data.length, "delivery", "deliveries") + ".");
    return page;
  });

  const showAttempts = guard(async function (id) {
    const page = await api("GET", "webhooks/deliveries/" + encodeURIComponent(id) + "/attempts");
    $("attempts").textContent = page.data.map((a) =>
      new Date(a.time * 1000).toISOString() + "  " + (a.status || a.error) + "  " + Math.round(a.duration * 1000) + " ms  " + (a.response_excerpt || "")
    ).join("\n") || "No attempts yet.";
    $("attempts").hidden = false;
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
  async function copySecret(box) {
    const value = $(box + "-value");
    const text = value.textContent;
    try { await navigator.clipboard.writeText(text); say("Copied."); } catch (e) {
      const range = document.createRange();
      range.selectNodeContents(value);
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
      out.steps.secret_hidden_at_start = !isShown($("secret-box"));
      const f = $("key-form").elements;
      f.name.value = "autotest"; f.scopes.value = params.get("scopes") || "";
      addGrantRow("projects", ["7", "9"]);
      addGrantRow("", []);  // an empty row is ignored
      const created = await createKey();
      const secret = $("secret-value").textContent;
      out.steps.created = created.key.id;
      out.steps.secret_shown = secret === created.secret && isShown($("secret-box"));
      out.steps.grants_created = created.key.grants;
      // Edit: the form is filled from the key; change the grants and set a monthly quota.
      await editKey(created.key.id);
      out.steps.edit_prefilled = f.name.value === "autotest" && state.grantRows.length === 1 && state.grantRows[0].ids.value === "7 9";
      const bad = addGrantRow("orgs", []);
      try { readGrants(); out.steps.grant_row_refused = false; } catch (e) { out.steps.grant_row_refused = true; }
      removeGrantRow(bad);
      state.grantRows[0].ids.value = "*";
      addGrantRow("jobs", ["3"]);
      f.quota_monthly.value = "1000";
      const updated = await submitKey();
      out.steps.grants_updated = updated.grants;
      out.steps.quota_updated = updated.quota;
      out.steps.form_reset = state.editing === null && state.grantRows.length === 0;
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
      out.steps.usage_source = usage.source;
      out.steps.usage_requests = usage.requests;
      out.steps.usage_days = usage.days;
      out.steps.chart_bars = $("usage-chart").querySelectorAll("rect").length;
      out.steps.quota_meters = $("usage-quotas").querySelectorAll("progress").length;
      const revoked = await revokeKey(created.key.id);
      out.steps.revoked = revoked.status;
      out.steps.after_revoke_status = (await call("GET", target, undefined, secret)).status;
      out.ok = out.steps.secret_hidden_at_start && out.steps.secret_shown && out.steps.edit_prefilled && out.steps.grant_row_refused && out.steps.form_reset &&
        out.steps.audit_rows > 0 && out.steps.revoked === "revoked" && out.steps.after_revoke_status === 401;
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
    if (!PLANS) $("plans").remove();
    $("login-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      sessionStorage.setItem(STORE, $("login-key").value.trim());
      $("login-key").value = "";
      say("");  // a previous key's "refused (401)" is not about this one
      if (signedIn()) refresh();
    });
    $("signout").addEventListener("click", signOut);
    $("key-form").addEventListener("submit", (ev) => { submitKey(ev).catch(() => {}); });
    $("key-cancel").addEventListener("click", endEdit);
    $("grant-add").addEventListener("click", () => { addGrantRow("", []).type.focus(); });
    $("keys-more").addEventListener("click", () => { loadKeys(true).catch(() => {}); });
    $("secret-copy").addEventListener("click", () => copySecret("secret"));
    $("secret-dismiss").addEventListener("click", () => hideSecret("secret"));
    $("endpoint-secret-copy").addEventListener("click", () => copySecret("endpoint-secret"));
    $("endpoint-secret-dismiss").addEventListener("click", () => hideSecret("endpoint-secret"));
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
    if (PLANS) loadPlans().catch(() => {});
    loadEndpoints().catch(() => {});
    searchAudit().catch(() => {});
  }

  start();
})();
