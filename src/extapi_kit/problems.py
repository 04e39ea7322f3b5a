"""RFC 9457 ``application/problem+json`` answers with stable problem types.

Every rejection the toolkit makes is one of the :data:`PROBLEMS` below. The ``type`` URI of each is
stable (clients may switch on it); titles are fixed per type so that, e.g., every failed
authentication looks byte-for-byte the same (case A2). ``detail`` never contains a secret.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from extapi_kit._types import ASGIApp, Receive, Scope, Send

__all__ = [
    "PROBLEMS",
    "PROBLEM_BASE_URI",
    "PROBLEM_CONTENT_TYPE",
    "Problem",
    "problem_app",
    "render_problem",
    "send_problem",
]

PROBLEM_BASE_URI = "https://extapi-kit.dev/problems/"
PROBLEM_CONTENT_TYPE = "application/problem+json"
# draft-ietf-httpapi-ratelimit-headers registers this type for rate-limit refusals.
_IETF_QUOTA_EXCEEDED = "https://iana.org/assignments/http-problem-types#quota-exceeded"


@dataclass(frozen=True, slots=True)
class Problem:
    """One problem type: HTTP status, stable ``type`` URI and fixed title.

    Args:
        slug: short stable name (``"unauthorized"``); the key in :data:`PROBLEMS`.
        status: the HTTP status code sent with it.
        title: a short, fixed, human-readable summary.
        type: the stable type URI; defaults to ``PROBLEM_BASE_URI + slug``.
    """

    slug: str
    status: int
    title: str
    type: str = field(default="")

    def __post_init__(self) -> None:
        if not self.type:
            object.__setattr__(self, "type", PROBLEM_BASE_URI + self.slug)

    def body(
        self,
        detail: str | None = None,
        *,
        instance: str | None = None,
        extensions: Mapping[str, Any] | None = None,
    ) -> bytes:
        """Return the JSON body for this problem.

        Args:
            detail: an explanation specific to this occurrence (never a secret).
            instance: a URI reference identifying this occurrence.
            extensions: extra members (e.g. ``errors`` for validation problems).
        """
        doc: dict[str, Any] = {"type": self.type, "title": self.title, "status": self.status}
        if detail is not None:
            doc["detail"] = detail
        if instance is not None:
            doc["instance"] = instance
        if extensions:
            for name, value in extensions.items():
                if name not in doc:
                    doc[name] = value
        return json.dumps(doc, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def _p(slug: str, status: int, title: str, type: str = "") -> Problem:
    return Problem(slug=slug, status=status, title=title, type=type)


PROBLEMS: dict[str, Problem] = {
    p.slug: p
    for p in (
        _p("bad-request", 400, "Bad request"),
        _p("invalid-content-length", 400, "Invalid Content-Length"),
        _p("api-key-in-query", 400, "API keys are not accepted in the query string"),
        _p("idempotency-key-missing", 400, "Idempotency-Key header required"),
        _p("idempotency-key-invalid", 400, "Invalid Idempotency-Key header"),
        _p("unauthorized", 401, "Unauthorized"),
        # 402, not 429: nothing refills a credit balance, so "retry later" (429, RFC 6585 §4)
        # would send clients into retry loops; RFC 9110 §15.5.3 keeps 402 for payment, which a
        # top-up is (docs/credits.md).
        _p("credits-exhausted", 402, "Credits exhausted"),
        _p("forbidden", 403, "Forbidden"),
        _p("insufficient-scope", 403, "Insufficient scope"),
        _p("ip-not-allowed", 403, "Client address not allowed"),
        _p("not-found", 404, "Not found"),
        _p("method-not-allowed", 405, "Method not allowed"),
        _p("request-timeout", 408, "Request timeout"),
        _p("idempotency-key-in-use", 409, "A request with this Idempotency-Key is in progress"),
        _p(
            "idempotency-response-not-stored",
            409,
            "Request already processed; its response was too large to store",
        ),
        _p("conflict", 409, "Conflict"),
        _p("gone", 410, "Gone"),
        _p("length-required", 411, "Content-Length required"),
        _p("request-too-large", 413, "Request body too large"),
        _p("unsupported-media-type", 415, "Unsupported media type"),
        _p("validation-error", 422, "Request validation failed"),
        _p(
            "idempotency-key-mismatch",
            422,
            "Idempotency-Key reused with a different request",
        ),
        _p("quota-exceeded", 429, "Rate limit exceeded", _IETF_QUOTA_EXCEEDED),
        _p("quota-exhausted", 429, "Usage quota exhausted"),
        _p("too-many-failed-attempts", 429, "Too many failed authentication attempts"),
        _p("internal-error", 500, "Internal server error"),
        _p("bad-gateway", 502, "Bad gateway"),
        _p("service-unavailable", 503, "Service unavailable"),
        _p("gateway-timeout", 504, "Gateway timeout"),
    )
}


def _problem(problem: Problem | str) -> Problem:
    return PROBLEMS[problem] if isinstance(problem, str) else problem


def render_problem(
    problem: Problem | str,
    detail: str | None = None,
    *,
    headers: Iterable[tuple[bytes, bytes]] = (),
    instance: str | None = None,
    extensions: Mapping[str, Any] | None = None,
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """Render a problem as ``(status, raw_headers, body)``.

    Args:
        problem: a :class:`Problem` or the slug of one in :data:`PROBLEMS`.
        detail: occurrence-specific explanation.
        headers: extra raw headers (lower-case names), e.g. ``Retry-After``.
        instance: optional instance URI.
        extensions: extra JSON members.
    """
    p = _problem(problem)
    body = p.body(detail, instance=instance, extensions=extensions)
    raw = [
        (b"content-type", PROBLEM_CONTENT_TYPE.encode()),
        (b"content-length", str(len(body)).encode()),
        *headers,
    ]
    return p.status, raw, body


async def send_problem(
    send: Send,
    problem: Problem | str,
    detail: str | None = None,
    *,
    headers: Iterable[tuple[bytes, bytes]] = (),
    instance: str | None = None,
    extensions: Mapping[str, Any] | None = None,
    scope: Scope | None = None,
) -> None:
    """Send a complete problem response through an ASGI ``send``.

    When ``scope`` is given, the problem's slug is recorded on the request context as the
    rejection reason, so the audit trail can name it.

    Args:
        send: the ASGI send callable.
        problem: a :class:`Problem` or a slug.
        detail: occurrence-specific explanation (never a secret).
        headers: extra raw headers.
        instance: optional instance URI.
        extensions: extra JSON members.
        scope: the request scope, to record the rejection on its context.
    """
    p = _problem(problem)
    if scope is not None:
        from extapi_kit.context import get_context

        ctx = get_context(scope)
        if ctx.rejection is None:
            ctx.rejection = p.slug
    status, raw, body = render_problem(
        p, detail, headers=headers, instance=instance, extensions=extensions
    )
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def problem_app(
    problem: Problem | str,
    detail: str | None = None,
    *,
    headers: Iterable[tuple[bytes, bytes]] = (),
    extensions: Mapping[str, Any] | None = None,
) -> ASGIApp:
    """Return a tiny ASGI app that answers every HTTP request with this problem.

    Args:
        problem: a :class:`Problem` or a slug.
        detail: occurrence-specific explanation.
        headers: extra raw headers.
        extensions: extra JSON members.
    """
    frozen_headers = tuple(headers)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send_problem(
            send, problem, detail, headers=frozen_headers, extensions=extensions, scope=scope
        )

    return app
