"""Small ASGI helpers: raw header access and closing a websocket."""

from __future__ import annotations

from extapi_kit._types import Scope, Send

__all__ = [
    "WS_POLICY_VIOLATION",
    "WS_TRY_AGAIN_LATER",
    "close_websocket",
    "get_header",
    "get_header_all",
]

# RFC 6455 §7.4.1 close codes.
WS_POLICY_VIOLATION = 1008
WS_TRY_AGAIN_LATER = 1013


def get_header(scope: Scope, name: bytes) -> bytes | None:
    """Return the first value of a header, or None. ``name`` must be lower-case.

    Args:
        scope: the ASGI scope.
        name: the lower-case header name as bytes.
    """
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value)
    return None


def get_header_all(scope: Scope, name: bytes) -> list[bytes]:
    """Return every value of a header, in order. ``name`` must be lower-case.

    Args:
        scope: the ASGI scope.
        name: the lower-case header name as bytes.
    """
    return [bytes(v) for k, v in scope.get("headers", ()) if k == name]


async def close_websocket(send: Send, code: int = WS_POLICY_VIOLATION, reason: str = "") -> None:
    """Refuse or close a websocket. Before ``websocket.accept`` the server answers HTTP 403.

    Args:
        send: the ASGI send callable.
        code: the RFC 6455 close code.
        reason: a short reason (never a secret).
    """
    await send({"type": "websocket.close", "code": code, "reason": reason})
