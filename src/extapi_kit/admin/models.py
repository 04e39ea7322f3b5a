"""Request and response models of the admin API (pydantic, so it validates and documents itself).

Response models name every field they return: a key's ``hash`` and an endpoint's signing secrets
are not fields of any of them, so they cannot leak through a listing even by mistake (the
handlers also never pass them). The plaintext key and a new webhook secret appear only in the
one-time :class:`KeyCreated` and :class:`SecretOut` answers (``SecretOut`` and ``ONCE_WARNING``
belong to the webhooks feature, which the self-service routes share; they are re-exported here).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from extapi_kit._units import check_timestamp, parse_duration
from extapi_kit.keys._validation import SCOPE_RULE, parse_scopes
from extapi_kit.webhooks._validation import ConcurrencyField, RateLimitField, URLField
from extapi_kit.webhooks.api_models import ONCE_WARNING, SecretOut

__all__ = [
    "MAX_USAGE_DAYS",
    "ActivityBucket",
    "ActivityOut",
    "ActivityQuery",
    "AuditQuery",
    "AuditRecordOut",
    "DeliveryQuery",
    "EndpointCreate",
    "EndpointCreated",
    "EndpointOut",
    "EndpointUpdate",
    "KeyCreate",
    "KeyCreated",
    "KeyListQuery",
    "KeyOut",
    "KeyUpdate",
    "QuotaStatus",
    "ReplayFailed",
    "RotateRequest",
    "SecretOut",
    "UsageCounts",
    "UsageDay",
    "UsageMonth",
    "UsageOut",
    "UsageQuery",
]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class KeyOut(BaseModel):
    """An API key as operators see it: never its hash or secret."""

    id: str
    display_prefix: str
    env: str
    name: str
    description: str = ""
    owner: str | None = None
    scopes: list[str] = []
    grants: dict[str, list[str]] = {}
    rate_limits: dict[str, str] = {}
    allowed_cidrs: list[str] = []
    quota: dict[str, Any] = {}
    metadata: dict[str, Any] = {}
    status: str
    created_at: str | None = None
    updated_at: str | None = None
    expires_at: str | None = None
    revoked_at: str | None = None
    last_used_at: str | None = None
    rotated_to: str | None = None
    rotated_from: str | None = None
    rotation_expires_at: str | None = None
    plan: str | None = None
    leaked_at: str | None = None


class KeyCreated(BaseModel):
    """The one answer that carries a plaintext key (create and rotate)."""

    key: KeyOut
    secret: str
    warning: str = ONCE_WARNING
    rotated_from: str | None = None


def _bounded_duration(value: str | float | None) -> str | float | None:
    # ConfigurationError is a ValueError, so pydantic reports it on the field as a 422 (M7).
    if value is not None:
        parse_duration(value)
    return value


def _bounded_datetime(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    # An aware datetime's timestamp() is a timedelta sum: it never overflows, even for year 1 at
    # +14:00 or year 9999 at -12:00, which lie outside what the key listing can render.
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    check_timestamp(aware.timestamp(), "expires_at")
    return value


ExpiresIn = Annotated[str | float | None, AfterValidator(_bounded_duration)]
ExpiresAt = Annotated[datetime | None, AfterValidator(_bounded_datetime)]


def _scopes(value: list[str] | str) -> list[str]:
    # The keys feature's one scope rule (issue 18 §4): a 422 naming the field, with the hint.
    return list(parse_scopes(value))


Scopes = Annotated[
    list[str] | str,
    AfterValidator(_scopes),
    Field(description=f"a list, or one string; {SCOPE_RULE}"),
]


class KeyCreate(_In):
    """Body of ``POST /keys``."""

    name: str = Field(min_length=1, max_length=200)
    env: str | None = None
    description: str = ""
    owner: str | None = None
    scopes: Scopes = []
    grants: dict[str, list[str]] | None = None
    rate_limits: dict[str, str] | None = None
    allowed_cidrs: list[str] | None = None
    quota: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    expires_at: ExpiresAt = Field(None, description="up to 9999-12-31T23:59:59Z")
    expires_in: ExpiresIn = Field(None, description="seconds or '30d'; at most 100 years")
    plan: str | None = Field(None, description="the plan (tier); null: the owner's plan, if any")


class KeyUpdate(_In):
    """Body of ``PATCH /keys/{key_id}``: only the fields sent are changed."""

    name: str | None = Field(None, min_length=1, max_length=200)
    description: str | None = None
    owner: str | None = None
    scopes: Scopes | None = None
    grants: dict[str, list[str]] | None = None
    rate_limits: dict[str, str] | None = None
    allowed_cidrs: list[str] | None = None
    quota: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    expires_at: ExpiresAt = Field(None, description="null clears the expiry")
    expires_in: ExpiresIn = Field(
        None, description="seconds or '30d' from now; at most 100 years; not with expires_at"
    )
    plan: str | None = Field(None, description="the plan (tier); null: back to the owner's plan")


class KeyListQuery(_In):
    """Query of ``GET /keys``."""

    owner: str | None = None
    env: str | None = None
    status: Literal["active", "rotating", "rotated", "expired", "revoked"] | None = None
    cursor: str | None = None
    limit: int = Field(50, ge=1, le=200)


class RotateRequest(_In):
    """Body of a rotation: how long the old secret keeps working."""

    grace: str | float = Field(0, description="seconds or '24h'; 0 ends the old key now")


class EndpointOut(BaseModel):
    """A webhook endpoint without its signing secrets."""

    id: str
    url: str
    description: str = ""
    event_types: list[str] = []
    enabled: bool = True
    disabled_reason: str | None = None
    rate_limit: float | None = None
    max_concurrency: int | None = None
    metadata: dict[str, str] = {}
    owner: str | None = None
    grants: dict[str, list[str]] | None = None
    key_id: str | None = None
    created_at: float
    failing_since: float | None = None
    secret_count: int = 0


class EndpointCreated(BaseModel):
    """The answer to ``POST /webhooks/endpoints``: the signing secret, shown once."""

    endpoint: EndpointOut
    secret: str
    warning: str = ONCE_WARNING


class EndpointCreate(_In):
    """Body of ``POST /webhooks/endpoints``."""

    url: URLField
    event_types: list[str] = []
    description: str = ""
    rate_limit: RateLimitField | None = None
    max_concurrency: ConcurrencyField | None = None
    metadata: dict[str, str] | None = None
    owner: str | None = None
    grants: dict[str, list[str]] | None = Field(
        None, description="only events about these resources (type -> ids, '*' = all)"
    )
    key_id: str | None = Field(
        None, description="the API key it belongs to; its current grants apply too"
    )


class EndpointUpdate(_In):
    """Body of ``PATCH /webhooks/endpoints/{endpoint_id}``."""

    url: URLField | None = None
    event_types: list[str] | None = None
    description: str | None = None
    enabled: bool | None = None
    rate_limit: RateLimitField | None = None
    max_concurrency: ConcurrencyField | None = None
    metadata: dict[str, str] | None = None
    grants: dict[str, list[str]] | None = Field(
        None, description="replace the endpoint's grants (null removes them)"
    )


class DeliveryQuery(_In):
    """Query of ``GET /webhooks/deliveries``."""

    endpoint_id: str | None = None
    status: Literal["pending", "delivering", "succeeded", "failed", "cancelled"] | None = None
    since: datetime | None = None
    limit: int = Field(100, ge=1, le=1000)


class ReplayFailed(_In):
    """Body of ``POST /webhooks/endpoints/{endpoint_id}/replay``."""

    since: datetime


class AuditQuery(_In):
    """Query of ``GET /audit``."""

    key_id: str | None = None
    route: str | None = None
    method: str | None = None
    status: int | None = Field(None, ge=100, le=599)
    since: datetime | None = None
    until: datetime | None = None
    limit: int = Field(100, ge=1, le=1000)
    cursor: str | None = None


class AuditRecordOut(BaseModel):
    """One audit record (the sink's stored form; it holds no secrets)."""

    id: str = ""
    timestamp: str
    timestamp_us: int
    request_id: str
    method: str
    path: str
    route: str | None = None
    query: str = ""
    status: int
    latency_ms: float
    key_id: str | None = None
    key_prefix: str | None = None
    owner: str | None = None
    client_ip: str | None = None
    user_agent: str | None = None
    rate_limit: dict[str, Any] | None = None
    idempotency: str | None = None
    rejection: str | None = None
    error: bool = False


class ActivityQuery(_In):
    """Query of ``GET /keys/{key_id}/activity``."""

    minutes: int = Field(60, ge=1, le=1440)


class ActivityBucket(BaseModel):
    """Calls of one key in one minute."""

    start: str
    requests: int = 0
    rejections: int = 0
    rate_limited: int = 0
    errors: int = 0


class ActivityOut(BaseModel):
    """Per-minute requests and rejections of a key, derived from the audit trail."""

    key_id: str
    source: Literal["audit"] = "audit"
    since: str
    until: str
    bucket_seconds: int = 60
    buckets: list[ActivityBucket]
    requests: int
    rejections: int
    rate_limited: int
    truncated: bool = False
    rate_limits: dict[str, str] = {}
    last_rate_limit: dict[str, Any] | None = None


MAX_USAGE_DAYS = 400


class UsageQuery(_In):
    """Query of ``GET /keys/{key_id}/usage`` and ``GET /owners/{owner}/usage``."""

    days: int = Field(30, ge=1, le=MAX_USAGE_DAYS, description="UTC days, today included")


class UsageCounts(BaseModel):
    """Request counters over some span: by class (read/write/...) and by outcome."""

    read: int = 0
    write: int = 0
    total: int = 0
    served: int = 0
    errors: int = 0
    rejected: dict[str, int] = Field(
        default_factory=dict, description="rejections by problem type slug"
    )
    classes: dict[str, int] = Field(default_factory=dict, description="requests by rate class")


class UsageDay(UsageCounts):
    """One UTC day's counters."""

    date: str


class UsageMonth(UsageCounts):
    """One UTC month's counters."""

    month: str


class QuotaStatus(BaseModel):
    """A quota that applies, and its use in the current period."""

    scope: Literal["key", "owner"]
    period: Literal["monthly", "daily"]
    period_id: str
    limit: int
    used: int
    remaining: int
    resets_at: str


class UsageOut(BaseModel):
    """Usage counters of a key or an owner (the source of truth for usage)."""

    key_id: str | None = None
    owner: str | None = None
    source: Literal["counters"] = "counters"
    since: str
    until: str
    days: list[UsageDay]
    totals: UsageCounts = Field(description="sums over ``days``")
    month: UsageMonth = Field(description="the current UTC month")
    quotas: list[QuotaStatus] = []
