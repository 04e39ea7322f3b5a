// A tiny DOM stand-in so node can run console.js's ?autotest=1 flow against a live admin API.
// It checks the script's logic and its API calls, not rendering or CSP (the Chromium test does).
// Usage: node console_shim.js <console.js> <base url> <console path> <api base> <fragment>
"use strict";
const fs = require("fs");
const [script, base, consolePath, apiBase, fragment] = process.argv.slice(2);

class Elem {
  constructor(tag, id) {
    this.tagName = tag; this.id = id || ""; this.children = []; this.dataset = {};
    this.hidden = false; this.className = ""; this.value = ""; this.attrs = {};
    this._text = ""; this._elements = null; this.listeners = {};
  }
  get textContent() { return this._text + this.children.map((c) => c.textContent).join(""); }
  set textContent(v) { this._text = String(v); this.children = []; }
  get elements() {
    if (!this._elements) {
      const store = {};
      this._elements = new Proxy(store, { get: (t, k) => (t[k] = t[k] || new Elem("input", k)) });
      this._store = store;
    }
    return this._elements;
  }
  reset() { if (this._store) for (const e of Object.values(this._store)) e.value = ""; }
  appendChild(c) { this.children.push(c); return c; }
  replaceChildren() { this.children = []; this._text = ""; }
  setAttribute(k, v) { this.attrs[k] = v; }
  addEventListener(t, f) { this.listeners[t] = f; }
  remove() { this.hidden = true; }
  all() { return this.children.flatMap((c) => [c, ...c.all()]); }
  querySelectorAll(sel) { return this.all().filter((e) => e.tagName === sel); }
}

// Elements the page starts with the hidden attribute start hidden here too.
const page = fs.readFileSync(require("path").join(require("path").dirname(script), "console.html"), "utf8");
const startHidden = new Set(Array.from(page.matchAll(/<[a-z]+\b[^>]*\bid="([^"]+)"[^>]*\shidden\b/g), (m) => m[1]));
const byId = {};
const make = (id) => { const e = new Elem("div", id); e.hidden = startHidden.has(id); return e; };
const document = {
  getElementById: (id) => (byId[id] = byId[id] || make(id)),
  querySelector: () => ({ content: apiBase }),
  querySelectorAll: (sel) => {
    const m = /^#([\w-]+) tr\[data-key-id="([^"]*)"\]$/.exec(sel);
    if (!m) return [];
    return document.getElementById(m[1]).children.filter((r) => r.dataset.keyId === m[2]);
  },
  createElement: (tag) => new Elem(tag),
  createElementNS: (_ns, tag) => new Elem(tag),
  createRange: () => ({ selectNodeContents() {} }),
};
const storage = {};
const g = globalThis;
g.document = document;
g.window = { prompt: () => "0", confirm: () => true, getSelection: () => ({ removeAllRanges() {}, addRange() {} }) };
g.sessionStorage = { getItem: (k) => storage[k] ?? null, setItem: (k, v) => { storage[k] = String(v); }, removeItem: (k) => { delete storage[k]; } };
g.location = { search: "?autotest=1", hash: "#" + fragment, pathname: consolePath };
g.history = { replaceState() {} };
const realFetch = g.fetch;
g.fetch = (url, init) => realFetch(url.startsWith("/") ? base + url : url, init);

eval(fs.readFileSync(script, "utf8"));  // the console script, as the page would run it

const started = Date.now();
(function wait() {
  const res = document.getElementById("autotest-result");
  if (res.dataset.done === "1") { process.stdout.write(res.textContent); return; }
  if (Date.now() - started > 30000) { process.stdout.write('{"ok":false,"error":"timeout"}'); return; }
  setTimeout(wait, 50);
})();
