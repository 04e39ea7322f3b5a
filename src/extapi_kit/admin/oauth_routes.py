"""Admin routes for the OAuth token signing keys: list them (public parts only) and rotate."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, Field

from extapi_kit.admin._common import guarded
from extapi_kit.exceptions import ProblemError, StoreError
from extapi_kit.oauth.signing import SigningKey, SigningKeys
from extapi_kit.problems import PROBLEMS
from extapi_kit.routing.api import ExternalAPI
from extapi_kit.routing.handlers import HandlerRequest

__all__ = ["SigningKeyList", "SigningKeyOut", "add_oauth_routes"]

_TAGS = ("oauth",)


class SigningKeyOut(BaseModel):
    """One token signing key: its id, algorithm, state and public JWK (never the private key).

    Args:
        kid: the key id (RFC 7638 thumbprint).
        alg: ``EdDSA`` or ``ES256``.
        state: ``next``, ``current`` or ``retired``.
        created_at: epoch seconds.
        activated_at: when it became current, if it did.
        retired_at: when it was retired, if it was.
        public_jwk: the public JWK as published in the JWKS.
    """

    kid: str
    alg: str
    state: str
    created_at: float
    activated_at: float | None = None
    retired_at: float | None = None
    public_jwk: dict[str, Any]


class SigningKeyList(BaseModel):
    """The signing keys published in the JWKS (current, next and still-valid retired ones).

    Args:
        data: the keys.
    """

    data: list[SigningKeyOut]


class RotateSigningKeys(BaseModel):
    """Rotate the signing keys.

    Args:
        algorithm: algorithm of the new next key (default: the key set's).
    """

    algorithm: str | None = Field(default=None, pattern="^(EdDSA|ES256)$")


def _out(keys: list[SigningKey]) -> SigningKeyList:
    # Built field by field from info(): a private member can never ride along.
    return SigningKeyList(data=[SigningKeyOut(**k.info()) for k in keys])


def add_oauth_routes(api: ExternalAPI, signing: SigningKeys, *, scopes: Sequence[str]) -> None:
    """Declare ``/oauth/signing-keys`` (GET) and ``/oauth/signing-keys/rotate`` (POST).

    Args:
        api: the admin registry.
        signing: the token signing keys.
        scopes: scopes every route requires (the admin scope).
    """
    common: dict[str, Any] = {"scopes": scopes, "tags": _TAGS, "idempotent": False}

    @api.get(
        "/oauth/signing-keys",
        response_model=SigningKeyList,
        summary="List the token signing keys (public parts only)",
        **common,
    )
    @guarded
    async def list_signing_keys(req: HandlerRequest) -> SigningKeyList:
        try:
            return _out(await signing.keys(refresh=True))
        except StoreError:
            raise ProblemError(PROBLEMS["service-unavailable"]) from None

    @api.post(
        "/oauth/signing-keys/rotate",
        request_model=RotateSigningKeys,
        response_model=SigningKeyList,
        summary="Rotate: next becomes current, current is retired, a new next key is created",
        **common,
    )
    @guarded
    async def rotate_signing_keys(req: HandlerRequest) -> SigningKeyList:
        body: RotateSigningKeys = req.body
        try:
            return _out(await signing.rotate(algorithm=body.algorithm))
        except StoreError:
            raise ProblemError(PROBLEMS["service-unavailable"]) from None
