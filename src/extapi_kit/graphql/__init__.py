"""GraphQL behind the stack: per-field scopes and grants, cost limits, persisted queries.

Needs the ``graphql`` extra (``pip install 'extapi-kit[graphql]'``, graphql-core 3.2+). The core
package never imports this one;
:meth:`~extapi_kit.routing.api.ExternalAPI.graphql` loads it when a GraphQL route is declared.
See docs/graphql.md.
"""

from __future__ import annotations

try:
    import graphql as _graphql_core  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised without the extra only
    raise ImportError(
        "extapi_kit.graphql needs graphql-core: pip install 'extapi-kit[graphql]'"
    ) from exc

from extapi_kit.graphql.authz import GraphQLContext, annotate, install_guards, not_found
from extapi_kit.graphql.cost import Analysis, GraphQLLimits, analyze
from extapi_kit.graphql.endpoint import GraphQLEndpoint
from extapi_kit.graphql.explorer import explorer_page
from extapi_kit.graphql.persisted import PersistedQueries, query_hash

__all__ = [
    "Analysis",
    "GraphQLContext",
    "GraphQLEndpoint",
    "GraphQLLimits",
    "PersistedQueries",
    "analyze",
    "annotate",
    "explorer_page",
    "install_guards",
    "not_found",
    "query_hash",
]
