"""G1: schemathesis against the studio example's generated OpenAPI, in process, all checks."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, MutableMapping
from typing import Any, cast

import anyio
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.python.asgi import shutdown_lifespans
from schemathesis.specs.openapi.checks import content_type_conformance
from starlette.applications import Starlette

from extapi_kit._types import ASGIApp, Receive, Scope, Send
from extapi_kit.examples.studio.app import create_app, store_urls
from extapi_kit.examples.studio.demo import bootstrap_admin_key
from extapi_kit.examples.studio.external import build_external_api
from extapi_kit.examples.studio.internal import StudioDB
from extapi_kit.keys import KeyService
from extapi_kit.oauth import SigningKeys, TokenIssuer
from extapi_kit.webhooks import WebhookManager, webhook_store_from_url
from tests.routing.test_schemathesis import CHECKS


class StudioOnce:
    """The studio app behind a lifespan that runs once for the whole module.

    schemathesis starts and stops an app's lifespan around every test item; the studio's is not
    restartable (its render-farm socket is consumed), so the first startup starts it in the
    schemathesis event loop and later startups and shutdowns are acknowledged without effect.
    The app itself is set by the module fixture, so importing this module starts nothing.
    """

    def __init__(self) -> None:
        self.app: ASGIApp | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.inbox: asyncio.Queue[MutableMapping[str, Any]] = asyncio.Queue()
        self.outbox: asyncio.Queue[MutableMapping[str, Any]] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self.app is not None, "the studio fixture sets the app"
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        await receive()
        if self.task is None:
            self.loop = asyncio.get_running_loop()
            inner = {**scope, "state": {}}
            self.task = self.loop.create_task(
                self.app(inner, self.inbox.get, self.outbox.put)  # type: ignore[arg-type]
            )
            await self.inbox.put({"type": "lifespan.startup"})
            message = await self.outbox.get()
            assert message["type"] == "lifespan.startup.complete", message
        await send({"type": "lifespan.startup.complete"})
        await receive()
        await send({"type": "lifespan.shutdown.complete"})

    async def _stop(self) -> None:
        await self.inbox.put({"type": "lifespan.shutdown"})
        message = await self.outbox.get()
        assert message["type"] == "lifespan.shutdown.complete", message
        if self.task is not None:
            await self.task

    def stop(self) -> None:
        """Shut the real lifespan down (from the test thread) if it was started."""
        if self.loop is not None and self.task is not None:
            asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(timeout=30)


def _document() -> dict[str, Any]:
    # The studio's declarations without any of its runtime (the handlers' database is never read
    # here); test_schema_is_the_served_document pins that this equals the served document.
    api = build_external_api(
        Starlette(),
        cast(StudioDB, None),
        cursor_secret="x" * 32,
        farm_url="http://127.0.0.1:9",
        farm_token="x",
        webhooks=WebhookManager(webhook_store_from_url("memory://")),
    )
    api.idempotency_enabled = True
    api.credits_enabled = True  # the studio builds a credits layer (issue 20)
    # The studio offers client credentials (issue 19): the document names the oauth2 scheme.
    signing = SigningKeys("memory://", secret="s" * 32)
    api.oauth(TokenIssuer(KeyService("memory://"), signing, issuer="http://127.0.0.1"))
    return api.openapi("v1")


STUDIO = StudioOnce()
DOCUMENT = _document()
schema = schemathesis.openapi.from_dict(DOCUMENT)
schema.app = STUDIO
schema.location = "/api/v1/openapi.json"


@pytest.fixture(scope="module")
def studio_key(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Create the studio app (high limits) and an all-scopes key; stop the studio afterwards."""
    data = tmp_path_factory.mktemp("studio")
    key = anyio.run(bootstrap_admin_key, data, store_urls(data)["keys"])[1]
    STUDIO.app = create_app(data, read_limit="1000000/minute", write_limit="1000000/minute")
    try:
        yield key
    finally:
        shutdown_lifespans()
        STUDIO.stop()


def test_schema_is_the_served_document(studio_key: str) -> None:
    """The document schemathesis runs from equals the one the studio serves."""
    assert STUDIO.app is not None
    served = STUDIO.app.state.api.openapi("v1")  # type: ignore[attr-defined]
    assert served == DOCUMENT


# Known limitation, excluded per operation only:
# - the studio mounts the stack with Starlette's Mount("/api"), whose `^/api/(?P<path>.*)$` has no
#   DOTALL: a path parameter holding a decoded newline (%0A) never reaches the stack and Starlette
#   answers its own text/plain 404 (a Starlette limitation; the registry itself is pinned on such
#   paths by tests/routing/test_schemathesis.py).
_TOOLS = {("GET", "/api/v1/tools/{tool_id}/{path}"), ("POST", "/api/v1/tools/{tool_id}/{path}")}


def _excluded(case: Any) -> list[Any]:
    op = (case.method.upper(), case.path)
    return [content_type_conformance] if op in _TOOLS else []


@schema.parametrize()
@settings(
    max_examples=15,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_studio_api_conforms_to_its_openapi(case: Any, studio_key: str) -> None:
    """G1: with an all-scopes key no studio operation answers 5xx or an undocumented status,
    bodies and headers match the document, and invalid input or a missing key is refused."""
    # The document offers X-API-Key or Bearer; the generator fills Authorization with junk that
    # would hide every call behind a 401, so the valid key goes in X-API-Key and junk is dropped.
    if case.headers:
        case.headers.pop("Authorization", None)
    response = case.call_and_validate(
        headers={"X-API-Key": studio_key}, checks=CHECKS, excluded_checks=_excluded(case)
    )
    assert response.status_code != 401, "the key must authenticate every generated call"
