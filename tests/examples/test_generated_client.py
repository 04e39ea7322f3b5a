"""A typed Python client generated from the studio's served OpenAPI document calls every route."""

from __future__ import annotations

import importlib
import json
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from packaging.version import Version

from extapi_kit.examples.studio._runtime import run_lifespan
from extapi_kit.examples.studio.app import create_app, store_urls
from extapi_kit.examples.studio.external import ALL_SCOPES
from extapi_kit.keys.service import KeyService
from tests.webhooks.receivers import Recorder, serve

BIN = Path(sys.executable).parent
GENERATOR = BIN / "openapi-python-client"
PACKAGE = "studio_public_api_client"


@pytest.fixture
def clean_modules() -> Iterator[None]:
    """Forget the generated package afterwards (another test may generate it again)."""
    yield
    for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
        del sys.modules[name]


async def _generate(doc: dict[str, Any], tmp: Path) -> Path:
    """Generate the client; return the folder that holds its package."""
    (tmp / "openapi.json").write_text(json.dumps(doc))
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    cmd = [str(GENERATOR), "generate", "--path", str(tmp / "openapi.json"), "--meta", "setup"]
    cmd += ["--fail-on-warning", "--output-path", str(tmp / "client")]
    done = await anyio.run_process(cmd, check=False, env=env)
    assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()
    # The package's version is info.version: it must be a PEP 440 version for pip to install it
    # ("1.0.0 (v1)" is not). The package is then imported from the generated folder.
    setup = (tmp / "client" / "setup.py").read_text()
    declared = re.search(r'version="([^"]+)"', setup)
    assert declared is not None and str(Version(declared.group(1))) == declared.group(1)
    return tmp / "client"


@pytest.mark.anyio
@pytest.mark.timeout(180)
async def test_generated_client_calls_every_route(tmp_path: Path, clean_modules: None) -> None:
    """G5: openapi-python-client generates a client (with a valid version) from openapi.json,
    and every operation called through it against the running studio answers a parsed, typed
    result (page envelopes, SSE text, 204 for a delete), never an untyped None."""
    data = tmp_path / "d"
    app = create_app(data, partner_loopback_webhooks=True)
    svc = KeyService(store_urls(data)["keys"])
    try:
        _, key = await svc.create("generated-client", scopes=list(ALL_SCOPES))
    finally:
        await svc.aclose()
    async with run_lifespan(app), serve(app) as base, serve(Recorder()) as hooks:
        async with httpx.AsyncClient(base_url=base) as raw:
            doc = (await raw.get("/api/v1/openapi.json")).json()
        site = await _generate(doc, tmp_path)
        sys.path.insert(0, str(site))
        try:
            called = await _call_every_route(base, key, hooks)
        finally:
            sys.path.remove(str(site))
    documented = {op["operationId"] for item in doc["paths"].values() for op in item.values()}
    assert called == documented


async def _call_every_route(base: str, key: str, hooks: str) -> set[str]:
    pkg = importlib.import_module(PACKAGE)
    models = importlib.import_module(PACKAGE + ".models")
    client = pkg.AuthenticatedClient(base_url=base, token=key, raise_on_unexpected_status=True)
    called: set[str] = set()

    async def call(tag: str, op: str, status: int, **kwargs: Any) -> Any:
        module = importlib.import_module(f"{PACKAGE}.api.{tag}.{op}")
        response = await module.asyncio_detailed(client=client, **kwargs)
        assert response.status_code == status, (op, response.status_code, response.content)
        if status != 204:
            assert response.parsed is not None, op
            assert not isinstance(response.parsed, models.Problem), (op, response.parsed)
        called.add(op)
        return response.parsed

    async with client:
        page = await call("projects", "get_api_v1_projects", 200)
        assert isinstance(page, models.PageProjectOut) and page.data
        assert isinstance(page.data[0], models.ProjectOut)
        made = await call("projects", "post_api_v1_projects", 201, body=models.ProjectIn("gen"))
        assert (await call("projects", "get_api_v1_projects_id", 200, id=made.id)).name == "gen"
        assets = await call("assets", "get_api_v1_projects_id_assets", 200, id=page.data[0].id)
        assert isinstance(assets, models.PageAssetOut) and assets.data
        approved = await call("assets", "post_api_v1_assets_id_approve", 200, id=assets.data[0].id)
        assert approved.approved is True
        listed = await call("models", "get_api_v1_models", 200)
        assert isinstance(listed.data[0], models.ModelOut)
        body = models.JobIn(project_id=made.id, model=listed.data[0].id, prompt="a fox")
        job = await call("jobs", "post_api_v1_jobs", 201, body=body, idempotency_key="gen-1")
        assert (await call("jobs", "get_api_v1_jobs_id", 200, id=job.id)).id == job.id
        stream = await call("jobs", "get_api_v1_jobs_id_events", 200, id=job.id)
        assert isinstance(stream, str) and "event: progress" in stream
        events = [json.loads(x[6:]) for x in stream.splitlines() if x.startswith("data: ")]
        assert events[-1]["status"] == "completed" and events[-1]["progress"] == 100
        status = await call("tools", "get_api_v1_tools_tool_id_path", 200, tool_id="renderfarm",
                            path="status")  # fmt: skip
        assert status["nodes"] == 8  # a tool's answer is documented as any JSON
        queued = models.PostApiV1ToolsToolIdPathBody.from_dict({"frames": 3})
        answer = await call("tools", "post_api_v1_tools_tool_id_path", 202, tool_id="renderfarm",
                            path="queue", body=queued)  # fmt: skip
        assert answer == {"queued": True, "frames": 3}
        spec = await call("meta", "get_api_v1_openapi_json", 200)
        assert spec.additional_properties["info"]["version"] == "1.0.0"
        assert "swagger-ui-bundle.js" in await call("meta", "get_api_v1_docs", 200)
        catalogue = await call("meta", "get_api_v1_webhooks_event_types", 200)
        assert "job.completed" in {t.type_ for t in catalogue.data}
        reg = models.EndpointRegistration(url=hooks + "/hook", event_types=["job.completed"])
        endpoint = await call("webhooks", "post_api_v1_webhooks_endpoints", 201, body=reg)
        eid = endpoint.endpoint.id
        assert (await call("webhooks", "get_api_v1_webhooks_endpoints", 200)).data
        await call("webhooks", "get_api_v1_webhooks_endpoints_endpoint_id", 200, endpoint_id=eid)
        await call("webhooks", "post_api_v1_webhooks_endpoints_endpoint_id_rotate_secret", 200,
                   endpoint_id=eid)  # fmt: skip
        await call("webhooks", "get_api_v1_webhooks_endpoints_endpoint_id_deliveries", 200,
                   endpoint_id=eid)  # fmt: skip
        await call("webhooks", "delete_api_v1_webhooks_endpoints_endpoint_id", 204, endpoint_id=eid)
    return called
