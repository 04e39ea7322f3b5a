"""``extapi-kit tokens``: issue a test access token; list and rotate the token signing keys.

- ``tokens issue --key KEY`` authenticates the key exactly as ``POST /oauth/token`` would and
  prints the access token (``--json``: the RFC 6749 token response). ``--key -`` reads the key
  from stdin and ``$EXTAPI_KIT_KEY`` is used when ``--key`` is left out, so the key need not
  land in the shell history.
- ``tokens signing-keys list`` prints each signing key's id, algorithm and state (never a
  private key); ``rotate`` promotes next to current, retires current, creates a new next.

Stores: ``--store`` (the key store: ``$EXTAPI_KIT_STORE``, else ``sqlite:///extapi-kit.db``) and
``--signing-store`` (``$EXTAPI_KIT_SIGNING_STORE``, else the key store). Private signing keys are
sealed with ``$EXTAPI_KIT_SIGNING_SECRET`` (required unless the signing store is ``file://``).
The issuer (``iss``) comes from ``--issuer`` or ``$EXTAPI_KIT_ISSUER``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from extapi_kit.cli._output import echo
from extapi_kit.cli._stores import require_existing
from extapi_kit.exceptions import ConfigurationError

if TYPE_CHECKING:
    from extapi_kit.oauth.signing import SigningKeys

__all__ = ["register"]

DEFAULT_STORE = "sqlite:///extapi-kit.db"


def _key_store(args: argparse.Namespace) -> str:
    return str(args.store or os.environ.get("EXTAPI_KIT_STORE") or DEFAULT_STORE)


def _signing(args: argparse.Namespace, *, read_only: bool = False) -> SigningKeys:
    from extapi_kit.oauth.signing import SigningKeys

    url = args.signing_store or os.environ.get("EXTAPI_KIT_SIGNING_STORE") or _key_store(args)
    if read_only:
        require_existing(url, "signing key store", "--signing-store")
    secret = os.environ.get("EXTAPI_KIT_SIGNING_SECRET") or None
    return SigningKeys(url, secret=secret, algorithm=getattr(args, "algorithm", None) or "EdDSA")


def _presented_key(args: argparse.Namespace) -> str:
    if args.key == "-":
        return sys.stdin.readline().strip()
    key = args.key or os.environ.get("EXTAPI_KIT_KEY")
    if not key:
        raise ConfigurationError("give --key KEY, --key - (read from stdin) or $EXTAPI_KIT_KEY")
    return str(key).strip()


async def _issue(args: argparse.Namespace) -> None:
    from extapi_kit.keys.service import KeyService
    from extapi_kit.oauth.issuer import OAuthError, TokenIssuer

    issuer_url = args.issuer or os.environ.get("EXTAPI_KIT_ISSUER")
    if not issuer_url:
        raise ConfigurationError("give --issuer URL or $EXTAPI_KIT_ISSUER (the token's iss)")
    keys = KeyService(require_existing(_key_store(args), "key store"), prefix=args.prefix)
    signing = _signing(args)
    try:
        issuer = TokenIssuer(
            keys,
            signing,
            issuer=issuer_url,
            audience=args.audience or None,
            lifetime=args.lifetime,
        )
        try:
            token = await issuer.issue(_presented_key(args), scope=args.scope)
        except OAuthError as exc:
            raise ConfigurationError(f"{exc.error}: {exc.description}") from None
        if args.json:
            print(json.dumps(token.response(), indent=2))
        else:
            echo(token.access_token)
            echo(
                f"expires in {token.expires_in} s; scope {token.scope or '-'}; jti {token.jti}",
                file=sys.stderr,
            )
    finally:
        await signing.aclose()
        await keys.aclose()


async def _list(args: argparse.Namespace) -> None:
    signing = _signing(args, read_only=True)
    try:
        keys = await signing.keys(refresh=True, create=False)
    finally:
        await signing.aclose()
    _print_keys(args, [k.info() for k in keys])


async def _rotate(args: argparse.Namespace) -> None:
    signing = _signing(args)
    try:
        keys = await signing.rotate(algorithm=args.algorithm)
    finally:
        await signing.aclose()
    _print_keys(args, [k.info() for k in keys])


def _print_keys(args: argparse.Namespace, rows: list[dict[str, Any]]) -> None:
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    echo(f"{'KID':45}{'ALG':7}{'STATE':9}CREATED")
    order = {"current": 0, "next": 1, "retired": 2}
    for row in sorted(rows, key=lambda r: (order.get(r["state"], 3), -r["created_at"])):
        echo(f"{row['kid']:45}{row['alg']:7}{row['state']:9}{_when(row['created_at'])}")


def _when(ts: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _handler(fn: Callable[[argparse.Namespace], Coroutine[Any, Any, None]]) -> Callable[..., int]:
    def run(args: argparse.Namespace) -> int:
        asyncio.run(fn(args))
        return 0

    return run


def register(subparsers: Any) -> None:
    """Add the ``tokens`` command group.

    Args:
        subparsers: the object returned by ``ArgumentParser.add_subparsers()``.
    """
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--store", help=f"key store URL (default $EXTAPI_KIT_STORE or {DEFAULT_STORE})"
    )
    common.add_argument(
        "--signing-store",
        help="signing key store URL (default $EXTAPI_KIT_SIGNING_STORE, else the key store);"
        " private keys are sealed with $EXTAPI_KIT_SIGNING_SECRET",
    )
    common.add_argument("--json", action="store_true", help="print JSON")
    tokens = subparsers.add_parser("tokens", help="OAuth access tokens and their signing keys")
    sub = tokens.add_subparsers(dest="tokens_command", metavar="ACTION")
    sub.required = True

    p = sub.add_parser("issue", parents=[common], help="issue an access token for a key (tests)")
    p.add_argument("--key", help="the API key; '-' reads it from stdin (default $EXTAPI_KIT_KEY)")
    p.add_argument("--scope", help="narrow the token to these scopes (space separated)")
    p.add_argument("--issuer", help="the token's iss, e.g. https://api.example.com")
    p.add_argument("--audience", help="the token's aud (default: the issuer)")
    p.add_argument("--lifetime", default="15m", help="token lifetime, 60s to 24h (default 15m)")
    p.add_argument("--prefix", default="xk", help="key prefix (default xk)")
    p.set_defaults(handler=_handler(_issue))

    signing = sub.add_parser("signing-keys", help="list or rotate the token signing keys")
    ssub = signing.add_subparsers(dest="signing_command", metavar="ACTION")
    ssub.required = True
    p = ssub.add_parser("list", parents=[common], help="list signing keys (public parts)")
    p.set_defaults(handler=_handler(_list))
    p = ssub.add_parser(
        "rotate", parents=[common], help="promote next to current and create a new next key"
    )
    p.add_argument("--algorithm", choices=("EdDSA", "ES256"), help="algorithm of the new key")
    p.set_defaults(handler=_handler(_rotate))
