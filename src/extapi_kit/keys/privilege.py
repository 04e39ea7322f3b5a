"""No escalation: a key made or changed on behalf of another key never holds more than it.

:func:`excess` compares the privilege fields of a key record - scopes, resource grants, allowed
networks and expiry - with those of the key acting (case A14). The admin API calls it before a
create, an update and a rotation, so an admin key restricted to some projects cannot mint an
unrestricted key, a key with ``["admin"]`` cannot mint ``["*"]``, and nobody rotates (and so
receives the secret of) a key wider than their own.

Rate limits and quotas are left out on purpose: they are budgets an operator assigns per key,
not permissions, and a key's missing override means "the deployment's default", which this
module cannot see.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Iterable, Mapping

from extapi_kit.context import has_scope, is_reserved_scope
from extapi_kit.exceptions import PermissionDeniedError
from extapi_kit.keys.models import KeyRecord

__all__ = ["check_within", "excess", "grants_within", "scope_within"]


def scope_within(held: Collection[str], scope: str) -> bool:
    """Return whether a key holding ``held`` may hand out ``scope``.

    A wildcard is handed out only by the same or a wider wildcard (``projects:*`` needs
    ``projects:*`` or ``*``); a reserved scope only by itself.

    Args:
        held: the acting key's scopes.
        scope: a scope the new key would hold.
    """
    if scope in held:
        return True
    if is_reserved_scope(scope):
        return False
    if scope == "*":
        return False
    if scope.endswith(":*"):
        stem = scope[:-1]
        return any(
            g == "*" or (g.endswith(":*") and stem.startswith(g[:-1]) and not is_reserved_scope(g))
            for g in held
        )
    return has_scope(frozenset(held), scope)


def grants_within(
    held: Mapping[str, Collection[str]], wanted: Mapping[str, Collection[str]]
) -> bool:
    """Return whether resource grants ``wanted`` are within ``held``.

    A type the acting key is restricted on must be restricted on the new key too, to a subset
    (a missing entry or ``"*"`` means every id, so it is never within a restriction).

    Args:
        held: the acting key's grants.
        wanted: the new key's grants.
    """
    for kind, ids in held.items():
        if "*" in ids:
            continue
        mine = wanted.get(kind)
        if mine is None or "*" in mine or not set(mine) <= set(ids):
            return False
    return True


def _networks_within(held: Iterable[str], wanted: Iterable[str]) -> bool:
    outer = [ipaddress.ip_network(c, strict=False) for c in held]
    if not outer:
        return True
    inner = [ipaddress.ip_network(c, strict=False) for c in wanted]
    if not inner:
        return False  # no restriction = from anywhere
    return all(
        any(n.version == o.version and n.subnet_of(o) for o in outer)  # type: ignore[arg-type]
        for n in inner
    )


def excess(actor: KeyRecord, target: KeyRecord) -> str | None:
    """Return what ``target`` holds beyond ``actor`` (a short reason), or None when within.

    Args:
        actor: the key acting (its stored record).
        target: the key as it would be after the create, update or rotation.
    """
    beyond = [s for s in target.scopes if not scope_within(actor.scopes, s)]
    if beyond:
        return f"scopes the calling key does not hold: {', '.join(sorted(beyond))}"
    if not grants_within(actor.grants, target.grants):
        return "resource grants wider than the calling key's"
    if not _networks_within(actor.allowed_cidrs, target.allowed_cidrs):
        return "allowed networks wider than the calling key's"
    end = actor.valid_until()
    if end is not None:
        until = target.valid_until()
        if until is None or until > end:
            return "an expiry later than the calling key's"
    return None


def check_within(actor: KeyRecord, target: KeyRecord) -> None:
    """Raise when ``target`` would hold more than ``actor``.

    Args:
        actor: the key acting.
        target: the key as it would be after the change.

    Raises:
        PermissionDeniedError: naming what exceeds (never a secret).
    """
    reason = excess(actor, target)
    if reason is not None:
        raise PermissionDeniedError(f"the key would hold {reason} (no escalation)")
