"""Shared helpers for key tests: a cheap argon2 hasher, a spy that counts hash work, a tiny app."""

from __future__ import annotations

import threading

from argon2 import profiles

from extapi_kit._types import Receive, Scope, Send
from extapi_kit.keys.hashing import Argon2Hasher


class SpyHasher(Argon2Hasher):
    """A cheap argon2 hasher that counts every hash and verify call and the threads they ran on."""

    def __init__(self) -> None:
        super().__init__(profiles.CHEAPEST)
        self.verify_calls = 0
        self.hash_calls = 0
        self.threads: set[str] = set()
        self._lock = threading.Lock()

    def hash(self, secret: str) -> str:
        with self._lock:
            self.hash_calls += 1
        return super().hash(secret)

    def verify(self, stored: str, secret: str) -> bool:
        with self._lock:
            self.verify_calls += 1
            self.threads.add(threading.current_thread().name)
        return super().verify(stored, secret)


def cheap_hasher() -> Argon2Hasher:
    """Return an argon2id hasher with the cheapest parameters (tests only)."""
    return Argon2Hasher(profiles.CHEAPEST)


class RecordingApp:
    """A tiny ASGI app that answers 200 and remembers the principal it saw."""

    def __init__(self) -> None:
        self.calls = 0
        self.principals: list[object] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        from extapi_kit.context import get_context

        self.calls += 1
        self.principals.append(get_context(scope).principal)
        if scope["type"] == "websocket":
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.close", "code": 1000})
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


def forge(display_prefix: str) -> str:
    """Return a well-formed key (valid checksum) for an existing key id with a wrong secret."""
    from extapi_kit.keys.format import _checksum, generate_key

    body = f"{display_prefix}_{generate_key()[-49:-6]}"
    return body + _checksum(body)
