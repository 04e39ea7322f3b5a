"""OAuth 2.0 client credentials with JWT access tokens (issue 19).

Issuing: :class:`SigningKeys` (rotating Ed25519/ES256 keys, sealed at rest),
:class:`TokenIssuer` (API key -> RFC 9068 access token) and :class:`TokenEndpoint` (``POST
/oauth/token``, ``/.well-known/jwks.json``, ``/.well-known/oauth-authorization-server``). See
``docs/oauth.md``.

Validating: :class:`TokenVerifier` accepts our tokens and an external identity provider's
(:class:`ExternalIssuer`, claims mapped by :class:`ClaimsMapping`); give it to ``build()`` as
``token_verifier=``. See ``docs/identity-providers.md``.
"""

from __future__ import annotations

from extapi_kit.oauth.claims import ClaimsMapping
from extapi_kit.oauth.endpoint import TokenEndpoint
from extapi_kit.oauth.issuer import IssuedToken, OAuthError, TokenIssuer
from extapi_kit.oauth.signing import SigningKey, SigningKeys
from extapi_kit.oauth.signing_store import SigningKeyStore, signing_store_from_url
from extapi_kit.oauth.verify import ExternalIssuer, InvalidTokenError, TokenVerifier

__all__ = [
    "ClaimsMapping",
    "ExternalIssuer",
    "InvalidTokenError",
    "IssuedToken",
    "OAuthError",
    "SigningKey",
    "SigningKeyStore",
    "SigningKeys",
    "TokenEndpoint",
    "TokenIssuer",
    "TokenVerifier",
    "signing_store_from_url",
]
