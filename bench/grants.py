"""Cost of resource-grant checks per request, in process (issue 8 target: <= 3 µs added).

Every case is the registry forwarding ``GET /api/v1/projects/42`` to a bare ASGI app, with a
verified principal already on the request context (key verification is measured in
``bench/keys.py``), so the difference between rows is the grant work alone:

- ``no resource_params``: the baseline route, restricted key.
- ``path param, granted``: ``resource_params={"project_id": "projects"}``, key granted 50 ids
  including 42 (check, audit id recorded, uniform-404 wrapper on the answer).
- ``path param, key without entry``: the same route, a key with no ``projects`` grant.
- ``query param, granted``: ``?project_id=42`` declared as a resource (query string parsed).
- ``list post-filter (20 items)``: ``filter_field`` on a list route; the answer is buffered,
  parsed and (here) 10 of 20 items dropped. Defence in depth, not part of the 3 µs target.
- ``owner lookup (async fn)``: ``resource_lookup`` with an async function answering from a dict
  (the lookup's own query is the application's cost; this is the registry's share).
- ``owner lookup, sync fn (thread hop)``: the same as a sync function, run in a worker thread.
- ``owner lookup, unrestricted key``: the lookup is skipped for keys without restrictions.

``added_us`` is median minus the baseline median, ``added_min_us`` best batch minus best batch
(the target is judged on the latter: on a shared box medians swing by several µs); the last
row times :func:`~extapi_kit.routing.grants.check_request` alone.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

from bench.routing import BATCHES, _medians
from extapi_kit._types import ASGIApp, Receive, Scope, Send
from extapi_kit.context import Principal, RequestContext, get_context
from extapi_kit.routing import ExternalAPI
from extapi_kit.routing.grants import check_request

TARGET_US = 3.0
_ITEMS = json.dumps(
    {"data": [{"id": i, "project_id": 42 if i % 2 else 7} for i in range(20)]}
).encode()


async def _bare(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


async def _list(scope: Scope, receive: Receive, send: Send) -> None:
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": _ITEMS})


def _with_principal(app: ASGIApp, principal: Principal) -> ASGIApp:
    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        get_context(scope).principal = principal
        await app(scope, receive, send)

    return wrapped


def _scope(path: str, query: bytes = b"") -> Callable[[], Scope]:
    def make() -> Scope:
        return {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": query,
            "headers": [],
            "client": ("203.0.113.7", 1234),
            "server": ("t", 80),
        }

    return make


_OWNERS = {str(i): {"projects": 42} for i in range(100)}


async def _owner_async(values: Any) -> dict[str, Any] | None:
    return _OWNERS.get(str(values["asset_id"]))


def _owner_sync(values: Any) -> dict[str, Any] | None:
    return _OWNERS.get(str(values["asset_id"]))


def _api() -> ExternalAPI:
    api = ExternalAPI(docs=False)
    res = {"project_id": "projects"}
    api.expose("GET", "/assets/{asset_id}", to=_bare, path="/x", resource_lookup=_owner_async)
    api.expose("GET", "/sync-assets/{asset_id}", to=_bare, path="/x", resource_lookup=_owner_sync)
    api.expose("GET", "/plain/{project_id}", to=_bare, path="/x")
    api.expose("GET", "/projects/{project_id}", to=_bare, path="/x", resource_params=res)
    api.expose("GET", "/search", to=_bare, path="/x", resource_params=res)
    api.expose("GET", "/plain-list", to=_list, path="/x")
    api.expose("GET", "/list", to=_list, path="/x", filter_field={"projects": "project_id"})
    return api


async def _run() -> list[dict[str, Any]]:
    api = _api()
    restricted = Principal("k1", grants={"projects": frozenset(str(i) for i in range(1, 51))})
    unrestricted = Principal("k2", grants={"orgs": frozenset({"acme"})})
    app_r = _with_principal(api, restricted)
    app_u = _with_principal(api, unrestricted)
    cases: list[tuple[str, ASGIApp, Callable[[], Scope], bool]] = [
        ("no resource_params (baseline)", app_r, _scope("/api/v1/plain/42"), False),
        ("path param, granted", app_r, _scope("/api/v1/projects/42"), True),
        ("path param, key without entry", app_u, _scope("/api/v1/projects/42"), True),
        ("query param, granted", app_r, _scope("/api/v1/search", b"project_id=42"), True),
        ("owner lookup (async fn)", app_r, _scope("/api/v1/assets/7"), True),
        ("owner lookup, sync fn (thread hop)", app_r, _scope("/api/v1/sync-assets/7"), False),
        ("owner lookup, unrestricted key", app_u, _scope("/api/v1/assets/7"), True),
        ("list without filter_field (baseline)", app_r, _scope("/api/v1/plain-list"), False),
        ("list post-filter (20 items)", app_r, _scope("/api/v1/list"), False),
    ]
    medians = await _medians([(app, make) for _, app, make, _ in cases])
    rows: list[dict[str, Any]] = []
    baseline, base_min = medians[0]
    for (name, _, _, targeted), (median, best) in zip(cases, medians, strict=True):
        if name.startswith("list without"):
            baseline, base_min = median, best
        row: dict[str, Any] = {
            "name": name,
            "median_us": round(median, 2),
            "min_us": round(best, 2),
            "added_us": round(median - baseline, 2),
            "added_min_us": round(best - base_min, 2),
        }
        if targeted:
            row["target_us"] = TARGET_US
            # Judged on the best batch: medians swing by several µs on a shared 2-core box.
            row["ok"] = best - base_min <= TARGET_US
        rows.append(row)
    rows.append(_isolated(api, restricted))
    return rows


def _isolated(api: ExternalAPI, principal: Principal) -> dict[str, Any]:
    """The check itself, without the request around it (robust on a loaded box)."""
    route = next(r for r in api.routes if r.path == "/projects/{project_id}")
    spec = route.grants
    assert spec is not None  # declared above
    ctx = RequestContext(principal=principal)
    params = {"project_id": "42"}
    samples = []
    for _ in range(BATCHES):
        start = time.perf_counter_ns()
        for _ in range(2000):
            check_request(spec, ctx, params, params, b"", None)
        samples.append((time.perf_counter_ns() - start) / 2000 / 1000)
    median = statistics.median(samples)
    return {
        "name": "check_request() alone (path param)",
        "median_us": round(median, 3),
        "min_us": round(min(samples), 3),
        "target_us": TARGET_US,
        "ok": median <= TARGET_US,
    }


def run() -> list[dict[str, Any]]:
    """Run the grant benchmarks; return one row per case."""
    return asyncio.run(_run())


if __name__ == "__main__":
    for r in run():
        print(r)
