"""Persisted queries: the operations a GraphQL endpoint agrees to run, by SHA-256 hash.

Clients send ``{"extensions": {"persistedQuery": {"version": 1, "sha256Hash": "<hex>"}}}``
(Apollo's automatic persisted queries, APQ) instead of, or beside, the query text. Two modes:

- ``"allowlist"`` (for partners): only registered hashes run. A query text runs only when its
  hash is registered; registration through a request (APQ: hash and text together) is allowed
  only for keys holding ``register_scope`` (the operator), everyone else gets
  ``PERSISTED_QUERY_NOT_ALLOWED``.
- ``"cache"``: any valid query runs, and any client may register its hash (APQ as a bandwidth
  saver; no security promise).

Registered queries live in process memory; give every worker the same list with ``queries=``
or :meth:`~extapi_kit.graphql.PersistedQueries.from_file` (a JSON manifest: ``{hash: query}``
or ``[query, ...]``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path

from extapi_kit.exceptions import ConfigurationError

__all__ = ["PersistedQueries", "query_hash"]

_MODES = ("allowlist", "cache")


def query_hash(query: str) -> str:
    """Return the APQ hash of a query text: lowercase hex SHA-256 of its UTF-8 bytes.

    Args:
        query: the query text, exactly as sent.
    """
    return hashlib.sha256(query.encode("utf-8")).hexdigest()


class PersistedQueries:
    """A registry of persisted query texts by hash.

    Args:
        queries: query texts, or a mapping hash -> query text (each hash is checked).
        mode: ``"allowlist"`` or ``"cache"`` (see the module docstring).
        register_scope: the scope that lets a key register a query through a request in
            allowlist mode.
        max_entries: cap on registered queries (registration beyond it is refused).
    """

    def __init__(
        self,
        queries: Iterable[str] | Mapping[str, str] = (),
        *,
        mode: str = "allowlist",
        register_scope: str = "graphql:register",
        max_entries: int = 10_000,
    ) -> None:
        if mode not in _MODES:
            raise ConfigurationError(f"mode must be one of {_MODES}: {mode!r}")
        self.mode = mode
        self.register_scope = register_scope
        self.max_entries = max_entries
        self._queries: dict[str, str] = {}
        if isinstance(queries, Mapping):
            for digest, text in queries.items():
                if query_hash(text) != digest.lower():
                    raise ConfigurationError(f"persisted query {digest!r} does not match its text")
                self._queries[digest.lower()] = text
        else:
            for text in queries:
                self.register(text)

    @classmethod
    def from_file(cls, path: str | Path, **options: object) -> PersistedQueries:
        """Load a JSON manifest (``{hash: query}`` or ``[query, ...]``).

        Args:
            path: the manifest file.
            **options: the other constructor arguments.
        """
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if not isinstance(data, dict | list):
            raise ConfigurationError(f"{path}: a persisted query manifest is an object or a list")
        return cls(data, **options)  # type: ignore[arg-type]

    def __len__(self) -> int:
        return len(self._queries)

    def __contains__(self, digest: object) -> bool:
        return isinstance(digest, str) and digest.lower() in self._queries

    def get(self, digest: str) -> str | None:
        """Return the registered text of ``digest``, or None.

        Args:
            digest: the lowercase hex SHA-256.
        """
        return self._queries.get(digest.lower())

    def register(self, query: str) -> str:
        """Register a query text; return its hash.

        Args:
            query: the query text.
        """
        digest = query_hash(query)
        if digest not in self._queries and len(self._queries) >= self.max_entries:
            raise ConfigurationError("the persisted query registry is full")
        self._queries[digest] = query
        return digest
