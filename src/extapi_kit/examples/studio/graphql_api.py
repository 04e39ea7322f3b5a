"""The studio's projects, assets and jobs as GraphQL, with the same scopes and grants as REST.

Built in code with graphql-core. The declarations the endpoint enforces live in ``extensions``:
``scopes`` (the REST route's scope for the same data), ``cost`` (a job submission is worth ten
reads), and ``resource`` on the three object types, so a project-scoped key can never be handed
a foreign project, asset or job, whichever field leads to it: it gets ``null`` and the
``NOT_FOUND`` error a missing object gets. Writes go through the internal app, like the REST
routes, so the same domain events (webhooks) follow.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from extapi_kit.examples.studio.internal import StudioDB
from extapi_kit.graphql import GraphQLContext, not_found
from graphql import (
    GraphQLArgument,
    GraphQLBoolean,
    GraphQLError,
    GraphQLField,
    GraphQLFloat,
    GraphQLID,
    GraphQLInt,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLResolveInfo,
    GraphQLSchema,
    GraphQLString,
)

__all__ = ["build_studio_schema"]

_MAX_PAGE = 100


def _col(name: str, kind: Any) -> GraphQLField:
    def resolve(row: dict[str, Any], info: GraphQLResolveInfo[Any]) -> Any:
        return row.get(name)

    return GraphQLField(kind, resolve=resolve)


def _first(kwargs: dict[str, Any]) -> int:
    # The cost analysis refuses first > max_list_size before anything runs; clamp anyway.
    return max(0, min(int(kwargs.get("first") or 10), _MAX_PAGE))


def _int_id(value: str) -> int | None:
    # An ID is a string: only plain ASCII digits that fit SQLite's INTEGER name a row.
    if value.isascii() and value.isdigit() and len(value) <= 18:
        return int(value)
    return None


def _in_clause(ids: frozenset[str] | None, column: str) -> tuple[str, tuple[Any, ...]]:
    if ids is None:
        return "", ()
    if not ids:
        return f" AND {column} IN (NULL)", ()
    return f" AND {column} IN ({','.join('?' * len(ids))})", tuple(sorted(ids))


def build_studio_schema(db: StudioDB, internal: Any) -> GraphQLSchema:
    """Return the studio schema over its database and internal app.

    Args:
        db: the internal app's database (read by the resolvers).
        internal: the internal ASGI app (writes are sent to it).
    """

    async def post(path: str, body: Any = None) -> Any:
        transport = httpx.ASGITransport(internal)
        async with httpx.AsyncClient(transport=transport, base_url="http://internal") as c:
            return (await c.post(path, json=body)).json()

    def ctx(info: GraphQLResolveInfo[Any]) -> GraphQLContext:
        return info.context  # type: ignore[no-any-return]

    def one(sql: str, *args: Any) -> dict[str, Any] | None:
        rows = db.query(sql, args)
        return rows[0] if rows else None

    first_arg = {"first": GraphQLArgument(GraphQLInt, default_value=10)}
    project_ref = ("projects", "id")
    owned = ("projects", "project_id")

    def assets_of(project: dict[str, Any], info: GraphQLResolveInfo[Any], **kw: Any) -> Any:
        return db.query(
            "SELECT * FROM assets WHERE project_id = ? ORDER BY id LIMIT ?",
            (project["id"], _first(kw)),
        )

    def jobs_of(project: dict[str, Any], info: GraphQLResolveInfo[Any], **kw: Any) -> Any:
        return db.query(
            "SELECT * FROM jobs WHERE project_id = ? ORDER BY id LIMIT ?",
            (project["id"], _first(kw)),
        )

    def project_of(row: dict[str, Any], info: GraphQLResolveInfo[Any]) -> Any:
        # Deliberately unfiltered: the Project type's grant guard decides what a key may see.
        return one("SELECT * FROM projects WHERE id = ?", row["project_id"])

    project_type: GraphQLObjectType
    asset_type: GraphQLObjectType
    job_type: GraphQLObjectType

    def project_fields() -> dict[str, GraphQLField]:
        return {
            "id": GraphQLField(GraphQLNonNull(GraphQLID)),
            "orgId": _col("org_id", GraphQLNonNull(GraphQLString)),
            "name": GraphQLField(GraphQLNonNull(GraphQLString)),
            "status": GraphQLField(GraphQLNonNull(GraphQLString)),
            "createdAt": _col("created_at", GraphQLNonNull(GraphQLFloat)),
            "assets": GraphQLField(
                GraphQLNonNull(GraphQLList(GraphQLNonNull(asset_type))),
                args=first_arg,
                resolve=assets_of,
            ),
            "jobs": GraphQLField(
                GraphQLNonNull(GraphQLList(GraphQLNonNull(job_type))),
                args=first_arg,
                resolve=jobs_of,
                extensions={"scopes": ("jobs:read",)},
            ),
        }

    project_type = GraphQLObjectType(
        "Project", project_fields, extensions={"resource": project_ref}
    )
    asset_type = GraphQLObjectType(
        "Asset",
        lambda: {
            "id": GraphQLField(GraphQLNonNull(GraphQLID)),
            "projectId": _col("project_id", GraphQLNonNull(GraphQLID)),
            "name": GraphQLField(GraphQLNonNull(GraphQLString)),
            "kind": GraphQLField(GraphQLNonNull(GraphQLString)),
            "approved": GraphQLField(
                GraphQLNonNull(GraphQLBoolean), resolve=lambda r, i: bool(r["approved"])
            ),
            "project": GraphQLField(project_type, resolve=project_of),
        },
        extensions={"resource": owned},
    )
    job_type = GraphQLObjectType(
        "Job",
        lambda: {
            "id": GraphQLField(GraphQLNonNull(GraphQLID)),
            "projectId": _col("project_id", GraphQLNonNull(GraphQLID)),
            "model": GraphQLField(GraphQLNonNull(GraphQLString)),
            "prompt": GraphQLField(GraphQLNonNull(GraphQLString)),
            "status": GraphQLField(GraphQLNonNull(GraphQLString)),
            "progress": GraphQLField(GraphQLNonNull(GraphQLInt)),
            "project": GraphQLField(project_type, resolve=project_of),
        },
        extensions={"resource": owned},
    )
    model_type = GraphQLObjectType(
        "Model",
        {
            "id": GraphQLField(GraphQLNonNull(GraphQLID)),
            "name": GraphQLField(GraphQLNonNull(GraphQLString)),
            "version": GraphQLField(GraphQLNonNull(GraphQLString)),
        },
    )

    def projects(_: Any, info: GraphQLResolveInfo[Any], **kw: Any) -> Any:
        # Filtered in SQL so pages stay full; the type guard is the second line of defence.
        where, args = _in_clause(ctx(info).allowed_ids("projects"), "id")
        return db.query(
            f"SELECT * FROM projects WHERE 1=1{where} ORDER BY id LIMIT ?", (*args, _first(kw))
        )

    def id_arg(kind: str | None = None) -> dict[str, GraphQLArgument]:
        ext = {"resource": kind} if kind else None
        return {"id": GraphQLArgument(GraphQLNonNull(GraphQLID), extensions=ext)}

    def by_id(table: str) -> Callable[..., Any]:
        def resolve(_: Any, info: GraphQLResolveInfo[Any], id: str) -> Any:
            row_id = _int_id(id)
            if row_id is None:
                return None  # the guard answers NOT_FOUND, like any missing object
            return one(f"SELECT * FROM {table} WHERE id = ?", row_id)

        return resolve

    def jobs(_: Any, info: GraphQLResolveInfo[Any], **kw: Any) -> Any:
        where, args = _in_clause(ctx(info).allowed_ids("projects"), "project_id")
        return db.query(
            f"SELECT * FROM jobs WHERE 1=1{where} ORDER BY id DESC LIMIT ?", (*args, _first(kw))
        )

    query = GraphQLObjectType(
        "Query",
        {
            "projects": GraphQLField(
                GraphQLNonNull(GraphQLList(GraphQLNonNull(project_type))),
                args=first_arg,
                resolve=projects,
                extensions={"scopes": ("projects:read",)},
            ),
            "project": GraphQLField(
                project_type,
                args=id_arg("projects"),
                resolve=by_id("projects"),
                extensions={"scopes": ("projects:read",)},
            ),
            "asset": GraphQLField(
                asset_type,
                args=id_arg(),
                resolve=by_id("assets"),
                extensions={"scopes": ("projects:read",)},
            ),
            "job": GraphQLField(
                job_type,
                args=id_arg(),
                resolve=by_id("jobs"),
                extensions={"scopes": ("jobs:read",)},
            ),
            "jobs": GraphQLField(
                GraphQLNonNull(GraphQLList(GraphQLNonNull(job_type))),
                args=first_arg,
                resolve=jobs,
                extensions={"scopes": ("jobs:read",)},
            ),
            "models": GraphQLField(
                GraphQLNonNull(GraphQLList(GraphQLNonNull(model_type))),
                resolve=lambda _, info: db.query("SELECT * FROM models ORDER BY id"),
                extensions={"scopes": ("models:read",)},
            ),
        },
    )

    async def create_job(
        _: Any, info: GraphQLResolveInfo[Any], projectId: str, model: str, prompt: str
    ) -> Any:
        project = _int_id(projectId)
        if project is None:
            raise not_found()
        if not 1 <= len(model) <= 64 or not 1 <= len(prompt) <= 2000:
            raise GraphQLError(
                "model is 1-64 and prompt 1-2000 characters.", extensions={"code": "BAD_USER_INPUT"}
            )
        job = {"project_id": project, "model": model, "prompt": prompt}
        return await post("/internal/jobs", job)

    async def approve_asset(_: Any, info: GraphQLResolveInfo[Any], id: str) -> Any:
        # The owner is checked before the write, so a foreign asset is never approved.
        asset = _int_id(id)
        row = one("SELECT project_id FROM assets WHERE id = ?", asset) if asset else None
        ids = ctx(info).allowed_ids("projects")
        if row is None or (ids is not None and str(row["project_id"]) not in ids):
            raise not_found()
        return await post(f"/internal/assets/{asset}/approve")

    mutation = GraphQLObjectType(
        "Mutation",
        {
            "createJob": GraphQLField(
                job_type,
                args={
                    "projectId": GraphQLArgument(
                        GraphQLNonNull(GraphQLID), extensions={"resource": "projects"}
                    ),
                    "model": GraphQLArgument(GraphQLNonNull(GraphQLString)),
                    "prompt": GraphQLArgument(GraphQLNonNull(GraphQLString)),
                },
                resolve=create_job,
                extensions={"scopes": ("jobs:write",), "cost": 10},
            ),
            "approveAsset": GraphQLField(
                asset_type,
                args=id_arg(),
                resolve=approve_asset,
                extensions={"scopes": ("assets:write",), "cost": 10},
            ),
        },
    )
    return GraphQLSchema(query=query, mutation=mutation)
