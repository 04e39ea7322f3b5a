"""The stored form of an API key: :class:`KeyRecord` (never the secret; repr hides the hash)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from extapi_kit._units import MAX_TIMESTAMP
from extapi_kit.context import Principal

__all__ = ["KEY_STATUSES", "KeyRecord", "KeyStatus", "iso"]

KeyStatus = Literal["active", "rotating", "rotated", "expired", "revoked"]
KEY_STATUSES: tuple[str, ...] = ("active", "rotating", "rotated", "expired", "revoked")
_MIN_TIMESTAMP = -62_135_596_800.0  # 0001-01-01T00:00:00Z


def iso(ts: float | None) -> str | None:
    """Return an epoch timestamp as ISO 8601 UTC text, or None.

    Args:
        ts: epoch seconds.
    """
    if ts is None or math.isnan(ts):
        return None
    # New values are bounded on the way in (M7), but a record stored before that may hold 1e300
    # or inf: clamp to what datetime can show rather than fail every listing that contains it.
    ts = min(max(ts, _MIN_TIMESTAMP), MAX_TIMESTAMP)
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """One API key as stored: metadata, permissions, limits and the hash of its secret.

    Timestamps are epoch seconds. Use :func:`dataclasses.replace` to derive a changed copy.

    Args:
        id: the public key id (lookup handle).
        display_prefix: ``<prefix>_<env>_<id>``, safe to show.
        env: environment segment (``live``, ``test``, ...).
        name: human name.
        hash: the stored hash of the secret (hidden from repr).
        created_at: creation time.
        updated_at: last change time.
        description: free text.
        owner: owner or tenant id.
        scopes: granted scopes.
        grants: resource grants: type -> ids (``"*"`` = all).
        rate_limits: per-key limits by class, e.g. ``{"read": "500/minute"}``.
        allowed_cidrs: networks the key may be used from (empty: anywhere).
        quota: usage quota settings.
        metadata: free-form JSON-able data.
        expires_at: when the key stops working, or None.
        revoked_at: when it was revoked, or None.
        last_used_at: last successful use (throttled writes).
        rotated_to: id of the key that replaced this one.
        rotated_from: id of the key this one replaced.
        rotation_expires_at: end of the rotation grace period of a replaced key.
        lineage_id: id of the first key of its rotation chain (None: this key's own id); set by
            rotation and never changed, so idempotency records follow a rotated key (I6).
        leaked_at: when a leak of its secret was confirmed (secret scanning report or
            ``keys report-leak``), or None; see ``docs/leaked-keys.md``.
        plan: the plan (tier) the key is on (None: its owner's plan, if any); what the key sets
            itself wins over the plan (``docs/plans.md``).
    """

    id: str
    display_prefix: str
    env: str
    name: str
    hash: str = field(repr=False)
    created_at: float
    updated_at: float
    description: str = ""
    owner: str | None = None
    scopes: tuple[str, ...] = ()
    grants: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    rate_limits: Mapping[str, str] = field(default_factory=dict)
    allowed_cidrs: tuple[str, ...] = ()
    quota: Mapping[str, Any] = field(default_factory=dict)
    metadata: Mapping[str, Any] = field(default_factory=dict)
    expires_at: float | None = None
    revoked_at: float | None = None
    last_used_at: float | None = None
    rotated_to: str | None = None
    rotated_from: str | None = None
    rotation_expires_at: float | None = None
    lineage_id: str | None = None
    leaked_at: float | None = None
    plan: str | None = None

    @property
    def lineage(self) -> str:
        """The id of the first key of this key's rotation chain (its own id if never rotated)."""
        return self.lineage_id or self.id

    def valid_until(self) -> float | None:
        """Return the time the key stops being valid (expiry or end of grace), or None."""
        ends = [t for t in (self.expires_at, self.rotation_expires_at) if t is not None]
        return min(ends) if ends else None

    def status(self, now: float) -> KeyStatus:
        """Return the key's status at ``now``.

        Args:
            now: epoch seconds.
        """
        if self.revoked_at is not None and self.revoked_at <= now:
            return "revoked"
        if self.expires_at is not None and now >= self.expires_at:
            return "expired"
        if self.rotated_to is not None:
            end = self.rotation_expires_at
            return "rotating" if end is not None and now < end else "rotated"
        return "active"

    def is_valid(self, now: float) -> bool:
        """Return whether the key authenticates at ``now``.

        Args:
            now: epoch seconds.
        """
        return self.status(now) in ("active", "rotating")

    def to_principal(self) -> Principal:
        """Return the :class:`~extapi_kit.context.Principal` this key stands for."""
        return Principal(
            key_id=self.id,
            prefix=self.display_prefix,
            env=self.env,
            name=self.name,
            owner=self.owner,
            scopes=frozenset(self.scopes),
            grants={k: frozenset(v) for k, v in self.grants.items()},
            rate_limits=dict(self.rate_limits),
            allowed_cidrs=tuple(self.allowed_cidrs),
            quota=dict(self.quota),
            metadata=dict(self.metadata),
            lineage_id=self.lineage,
        )

    def to_dict(self, *, include_hash: bool = True) -> dict[str, Any]:
        """Return a JSON-able dict (the stored form).

        Args:
            include_hash: False for anything shown to people (CLI, admin API).
        """
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["scopes"] = list(self.scopes)
        data["grants"] = {k: list(v) for k, v in self.grants.items()}
        data["rate_limits"] = dict(self.rate_limits)
        data["allowed_cidrs"] = list(self.allowed_cidrs)
        data["quota"] = dict(self.quota)
        data["metadata"] = dict(self.metadata)
        if not include_hash:
            del data["hash"]
        return data

    def public_dict(self, now: float) -> dict[str, Any]:
        """Return what may be shown to operators: no hash, ISO timestamps, a status.

        Args:
            now: epoch seconds, to compute the status.
        """
        data = self.to_dict(include_hash=False)
        for name in (
            "created_at",
            "updated_at",
            "expires_at",
            "revoked_at",
            "last_used_at",
            "rotation_expires_at",
            "leaked_at",
        ):
            data[name] = iso(data[name])
        data["status"] = self.status(now)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> KeyRecord:
        """Build a record from :meth:`to_dict` output (unknown fields are ignored).

        Args:
            data: the stored dict.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        values["scopes"] = tuple(values.get("scopes") or ())
        values["grants"] = {k: tuple(v) for k, v in (values.get("grants") or {}).items()}
        values["rate_limits"] = dict(values.get("rate_limits") or {})
        values["allowed_cidrs"] = tuple(values.get("allowed_cidrs") or ())
        values["quota"] = dict(values.get("quota") or {})
        values["metadata"] = dict(values.get("metadata") or {})
        return cls(**values)
