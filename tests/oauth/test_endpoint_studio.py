"""The studio example offers client credentials to partners end to end, under uvicorn."""

from __future__ import annotations

from pathlib import Path

import httpx
import jwt as pyjwt
import pytest

from extapi_kit.examples.studio._runtime import run_lifespan
from extapi_kit.examples.studio.app import create_app
from tests.oauth.issue_support import serving

pytestmark = pytest.mark.anyio

ISSUER = "https://studio.example.test"
FORM = {"grant_type": "client_credentials"}


async def test_partner_token_call_budget_revoke(tmp_path: Path) -> None:
    """A partner trades its key for a token, calls the API with it within the key's scopes, the
    calls share the key's own rate budget, and revoking the key refuses its token too."""
    app = create_app(tmp_path / "d", issuer=ISSUER, read_limit="4/minute")
    async with (
        run_lifespan(app),
        serving(app) as base,
        httpx.AsyncClient(base_url=base) as http,
    ):
        keys = app.state.keys
        record, key = await keys.create("partner", scopes=["projects:read"])
        meta = (await http.get("/.well-known/oauth-authorization-server")).json()
        assert meta["token_endpoint"] == f"{ISSUER}/oauth/token"
        jwks = (await http.get("/.well-known/jwks.json")).json()
        r = await http.post("/oauth/token", data=FORM, auth=(record.id, key))
        assert r.status_code == 200, r.text
        token = r.json()["access_token"]
        kid = pyjwt.get_unverified_header(token)["kid"]
        signer = pyjwt.PyJWKSet.from_dict(jwks)[kid]
        claims = pyjwt.decode(token, signer.key, algorithms=["EdDSA"], audience=ISSUER)
        assert claims["sub"] == record.id and claims["scope"] == "projects:read"
        bearer = {"authorization": f"Bearer {token}"}
        statuses = []
        for headers in (bearer, {"x-api-key": key}, bearer, {"x-api-key": key}, bearer):
            statuses.append((await http.get("/api/v1/projects", headers=headers)).status_code)
        # 4 reads a minute for this key, whether it came as the key or as its token.
        assert statuses == [200, 200, 200, 200, 429]
        r = await http.post(
            "/oauth/token", data={**FORM, "scope": "projects:write"}, auth=(record.id, key)
        )
        assert r.status_code == 400 and r.json()["error"] == "invalid_scope"
        await keys.revoke(record.id)
        r = await http.get("/api/v1/projects", headers=bearer)
        assert r.status_code == 401
        r = await http.post("/oauth/token", data=FORM, auth=(record.id, key))
        assert r.status_code == 401 and r.json()["error"] == "invalid_client"
