"""A small GraphQL explorer page: one HTML file, no CDN, no third-party script.

Served publicly at ``<prefix>/<version>/graphql/explorer`` by
:meth:`~extapi_kit.routing.api.ExternalAPI.graphql`; it holds no data. The visitor pastes an API
key (kept in the page's memory only, sent as ``X-API-Key``), writes a query and variables, and
sees the JSON answer with its status and the ``RateLimit`` headers (what the query cost). A
strict ``Content-Security-Policy`` allows only the page's own inline script and same-origin
``fetch``.
"""

from __future__ import annotations

import html

__all__ = ["EXPLORER_CSP", "explorer_page"]

EXPLORER_CSP = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

_DEFAULT_QUERY = "query Projects {\n  projects(first: 5) {\n    id\n    name\n  }\n}\n"

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>%(title)s</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:14px system-ui,sans-serif;margin:0;display:grid;grid-template-rows:auto 1fr;height:100vh}
header{padding:.5rem 1rem;background:#1f2937;color:#fff;display:flex;gap:1rem;align-items:center}
header input{flex:1;max-width:28rem;font:inherit;padding:.25rem}
main{display:grid;grid-template-columns:1fr 1fr;gap:.5rem;padding:.5rem;min-height:0}
section{display:flex;flex-direction:column;gap:.25rem;min-height:0}
textarea,pre{font:13px ui-monospace,monospace;flex:1;margin:0;padding:.5rem;border:1px solid #ccc;
overflow:auto;white-space:pre-wrap}
#vars{flex:0 0 6rem}
button{font:inherit;padding:.25rem 1rem}
</style></head><body>
<header><strong>%(title)s</strong>
<label for="key">API key</label><input id="key" type="password" autocomplete="off">
<button id="run">Run</button><span id="status" role="status"></span></header>
<main><section><label for="query">Query</label>
<textarea id="query" spellcheck="false">%(query)s</textarea>
<label for="vars">Variables (JSON)</label><textarea id="vars" spellcheck="false">{}</textarea>
</section><section><label for="out">Answer</label><pre id="out" aria-live="polite"></pre>
</section></main>
<script>
const $ = (id) => document.getElementById(id);
$("run").addEventListener("click", async () => {
  let variables = {};
  try { variables = JSON.parse($("vars").value || "{}"); }
  catch (e) { $("out").textContent = "Variables are not valid JSON: " + e; return; }
  const headers = {"Content-Type": "application/json"};
  if ($("key").value) headers["X-API-Key"] = $("key").value;
  const res = await fetch(%(endpoint)s, {method: "POST", headers,
    body: JSON.stringify({query: $("query").value, variables})});
  const cost = res.headers.get("RateLimit") || "";
  $("status").textContent = res.status + (cost ? " | RateLimit: " + cost : "");
  const text = await res.text();
  try { $("out").textContent = JSON.stringify(JSON.parse(text), null, 2); }
  catch (e) { $("out").textContent = text; }
});
</script></body></html>
"""


def explorer_page(endpoint: str, title: str = "GraphQL explorer", query: str | None = None) -> str:
    """Return the explorer's HTML.

    Args:
        endpoint: the GraphQL endpoint's path (same origin).
        title: the page title.
        query: the query shown at first.
    """
    import json

    return _PAGE % {
        "title": html.escape(title),
        "query": html.escape(query if query is not None else _DEFAULT_QUERY),
        # A JSON string literal inside a script: "</" cannot close the script element.
        "endpoint": json.dumps(endpoint).replace("</", "<\\/"),
    }
