"""The response side of resource grants: filter lists, hide foreign objects, uniform 404s.

Used by the registry on routes that declare ``filter_field`` or any resource (see
:mod:`extapi_kit.routing.grants`). This is defence in depth: the target should already have
filtered with the key's grants, so the pages it builds stay full; an item dropped here makes
that page shorter than ``limit`` (documented in ``docs/authorization.md``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from extapi_kit._types import Message, Scope, Send
from extapi_kit.context import Principal
from extapi_kit.problems import send_problem
from extapi_kit.routing._buffered import BufferedAnswer
from extapi_kit.routing.grants import GrantSpec, allowed_ids, value_in

__all__ = ["GrantFilteredResponse", "filter_document", "restrictions", "uniform_not_found"]

logger = logging.getLogger("extapi_kit.routing")

_ENVELOPE_KEYS = ("data", "items")


def restrictions(spec: GrantSpec, principal: Principal | None) -> list[tuple[str, frozenset[str]]]:
    """Return ``(item field, allowed ids)`` for the route's filters that restrict this key.

    Args:
        spec: the route's grant declarations.
        principal: the verified key's principal.
    """
    out: list[tuple[str, frozenset[str]]] = []
    for kind, field in spec.filters:
        ids = allowed_ids(principal, kind)
        if ids is not None:
            out.append((field, ids))
    return out


def filter_document(doc: Any, rules: list[tuple[str, frozenset[str]]]) -> tuple[Any, bool, bool]:
    """Drop foreign items from a JSON answer; return ``(doc, visible, changed)``.

    A top-level list, or the ``data``/``items`` list of an envelope, loses every item whose
    field is not granted (or missing). A single object whose field is foreign is not visible
    (the caller answers 404).

    Args:
        doc: the parsed JSON answer.
        rules: from :func:`restrictions`.
    """

    def keep(item: Any) -> bool:
        if not isinstance(item, Mapping):
            return False
        for f, ids in rules:
            if not value_in(item.get(f), ids):
                return False
        return True

    if isinstance(doc, list):
        kept = [i for i in doc if keep(i)]
        return kept, True, len(kept) != len(doc)
    if isinstance(doc, dict):
        for key in _ENVELOPE_KEYS:
            items = doc.get(key)
            if isinstance(items, list):
                kept = [i for i in items if keep(i)]
                return {**doc, key: kept}, True, len(kept) != len(items)
        if any(f in doc for f, _ in rules):
            return doc, keep(doc), False
    return doc, True, False


class GrantFilteredResponse(BufferedAnswer):
    """Buffer a 2xx answer and drop foreign items before it leaves (defence in depth).

    Args:
        rules: from :func:`restrictions` (non-empty).
        scope: the request scope.
        send: the ASGI send to wrap.
    """

    __slots__ = ("_rules",)

    def __init__(self, rules: list[tuple[str, frozenset[str]]], scope: Scope, send: Send) -> None:
        super().__init__(scope, send)
        self._rules = rules

    async def _finish(self, start: Message, body: bytes) -> None:
        if not body:  # HEAD answers of handler targets: no data to filter or to leak
            await self._send(start)
            await self._send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        try:
            doc = json.loads(body)
        except ValueError:
            logger.error("grant-filtered route answered non-JSON; refused (fail closed)")
            await send_problem(self._send, "internal-error", scope=self._scope)
            return
        doc, visible, changed = filter_document(doc, self._rules)
        if not visible:
            await send_problem(self._send, "not-found", scope=self._scope)
            return
        if changed:
            body = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()
        await self._respond(start, body)


def uniform_not_found(send: Send, scope: Scope) -> Send:
    """Replace any 404 the target sends by the standard ``not-found`` problem.

    On routes that declare resources, a denied id and a missing id are then byte-identical.

    Args:
        send: the ASGI send to wrap.
        scope: the request scope.
    """
    replaced = False

    async def _send(message: Message) -> None:
        nonlocal replaced
        if message["type"] == "http.response.start" and message["status"] == 404:
            replaced = True
            await send_problem(send, "not-found", scope=scope)
            return
        if replaced:
            return
        await send(message)

    return _send
