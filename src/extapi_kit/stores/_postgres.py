"""PostgreSQL plumbing shared by every PostgreSQL-backed store (asyncpg).

What a feature's ``store_postgres.py`` needs, in one place:

- :func:`parse_postgres_url` turns ``postgresql://user@host:5432/db?schema=extapi`` (or
  ``postgres://``) into a :class:`PostgresConfig`: the connection URL for the driver plus our own
  options (``schema``, ``table_prefix``, ``connect_timeout``, ``statement_timeout``,
  ``pool_timeout``, ``pool_min``, ``pool_max``), which are stripped before the driver sees it.
- :class:`PostgresDatabase` owns one asyncpg pool with every deadline set (connect, statement,
  pool acquire), so a hung or unreachable server surfaces as :class:`StoreUnavailableError` within
  a deadline and never hangs a request (anchors-reliability §0.4). Its methods map driver errors
  with :func:`wrap_pg_error` and run the feature's migrations once before the first statement.
- :func:`register_migrations` lets each feature declare its own versioned schema
  (:class:`Migration`); :func:`migrate` applies what is missing in one transaction under an
  advisory lock, so two workers starting at once never race. ``extapi-kit db migrate`` runs it
  ahead of a deploy.
- SQL is written once with ``?`` placeholders (what SQLite takes) and :func:`pg_sql` renumbers them
  to asyncpg's ``$1, $2 ...``; ``{t}``-style table names come from :meth:`PostgresConfig.table`.

The driver is imported lazily: without the ``postgres`` extra a store raises an error naming it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Self, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from extapi_kit.exceptions import ConfigurationError, StoreError, StoreUnavailableError

if TYPE_CHECKING:
    import asyncpg

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_POOL_TIMEOUT",
    "DEFAULT_STATEMENT_TIMEOUT",
    "Migration",
    "PostgresConfig",
    "PostgresDatabase",
    "PostgresStore",
    "driver_errors",
    "import_asyncpg",
    "migrate",
    "migration_status",
    "parse_postgres_url",
    "pg_sql",
    "register_migrations",
    "registered_migrations",
    "rowcount",
    "wrap_pg_error",
]

logger = logging.getLogger("extapi_kit.stores")
T = TypeVar("T")

DEFAULT_CONNECT_TIMEOUT = 2.0
DEFAULT_STATEMENT_TIMEOUT = 2.0
DEFAULT_POOL_TIMEOUT = 2.0
MIGRATION_TIMEOUT = 60.0
SCHEMES = ("postgresql", "postgres")

_IDENT_RE = re.compile(r"[a-z_][a-z0-9_]{0,30}")
_PREFIX_RE = re.compile(r"(?:[a-z_][a-z0-9_]{0,30})?")
_OPTIONS = {
    "schema": str,
    "table_prefix": str,
    "connect_timeout": float,
    "statement_timeout": float,
    "pool_timeout": float,
    "pool_min": int,
    "pool_max": int,
}


def import_asyncpg() -> Any:
    """Return the ``asyncpg`` module, or raise an error naming the extra to install."""
    try:
        import asyncpg
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise ConfigurationError(
            "PostgreSQL stores need asyncpg: pip install 'extapi-kit[postgres]'"
        ) from exc
    return asyncpg


@dataclass(frozen=True, slots=True)
class PostgresConfig:
    """Where a PostgreSQL store lives and the deadlines of its connections.

    Args:
        dsn: the connection URL given to the driver (our own query options removed).
        schema: the schema holding the tables (created by the migrations).
        table_prefix: prefix of every table name (may be empty).
        connect_timeout: seconds a new connection may take.
        statement_timeout: seconds one statement may run (server ``statement_timeout`` and a
            client-side deadline slightly longer, for a server that stopped answering).
        pool_timeout: seconds to wait for a free pooled connection.
        pool_min: connections kept open.
        pool_max: most connections the pool opens.
    """

    dsn: str
    schema: str = "public"
    table_prefix: str = "extapi_"
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    statement_timeout: float = DEFAULT_STATEMENT_TIMEOUT
    pool_timeout: float = DEFAULT_POOL_TIMEOUT
    pool_min: int = 1
    pool_max: int = 10

    def __post_init__(self) -> None:
        if not _IDENT_RE.fullmatch(self.schema):
            raise ConfigurationError(
                f"invalid schema {self.schema!r}: lower-case letters, digits and _ (max 31)"
            )
        if not _PREFIX_RE.fullmatch(self.table_prefix):
            raise ConfigurationError(f"invalid table prefix {self.table_prefix!r}")
        for name in ("connect_timeout", "statement_timeout", "pool_timeout"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ConfigurationError(f"{name} must be a positive number of seconds")
        if not 0 <= self.pool_min <= self.pool_max or self.pool_max < 1:
            raise ConfigurationError("need 0 <= pool_min <= pool_max and pool_max >= 1")

    def __repr__(self) -> str:
        # The DSN may carry a password: show only where the store is.
        parts = urlsplit(self.dsn)
        where = f"{parts.hostname or ''}:{parts.port or 5432}{parts.path}"
        return f"PostgresConfig({where!r}, schema={self.schema!r})"

    def table(self, name: str) -> str:
        """Return the qualified name of a feature table: ``schema.<prefix><name>``.

        Args:
            name: the table's own name (``"api_keys"``).
        """
        return f"{self.schema}.{self.table_prefix}{name}"

    @property
    def channel(self) -> str:
        """The prefix of ``LISTEN/NOTIFY`` channels of stores in this schema."""
        return f"{self.schema}.{self.table_prefix}"


def parse_postgres_url(url: str, **options: Any) -> PostgresConfig:
    """Return the :class:`PostgresConfig` of a ``postgresql://`` or ``postgres://`` URL.

    Our options may come in the query string (``?schema=extapi&statement_timeout=1``) or as
    keyword arguments (which win); other query parameters (``sslmode``...) stay for the driver.

    Args:
        url: the store URL.
        **options: ``schema``, ``table_prefix``, ``connect_timeout``, ``statement_timeout``,
            ``pool_timeout``, ``pool_min``, ``pool_max``.

    Raises:
        ConfigurationError: for another scheme, an unknown option or a bad value.
    """
    parts = urlsplit(url)
    if parts.scheme.lower() not in SCHEMES:
        raise ConfigurationError("not a PostgreSQL URL (postgresql:// or postgres://)")
    kept: list[tuple[str, str]] = []
    given: dict[str, Any] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key in _OPTIONS:
            given[key] = value
        else:
            kept.append((key, value))
    unknown = set(options) - set(_OPTIONS)
    if unknown:
        raise ConfigurationError(
            f"unknown PostgreSQL store option(s): {', '.join(sorted(unknown))}"
        )
    given.update(options)
    values: dict[str, Any] = {}
    for key, value in given.items():
        try:
            values[key] = _OPTIONS[key](value)
        except (TypeError, ValueError):
            raise ConfigurationError(f"invalid PostgreSQL store option {key}={value!r}") from None
    dsn = urlunsplit(("postgresql", parts.netloc, parts.path, urlencode(kept), ""))
    return PostgresConfig(dsn=dsn, **values)


def pg_sql(sql: str) -> str:
    """Renumber ``?`` placeholders (SQLite's style, shared SQL) to ``$1, $2 ...`` (asyncpg's).

    Shared statements never contain a literal ``?``.

    Args:
        sql: a statement with ``?`` placeholders.
    """
    counter = iter(range(1, sql.count("?") + 1))
    return re.sub(r"\?", lambda _: f"${next(counter)}", sql)


def driver_errors() -> tuple[type[BaseException], ...]:
    """Return the exception classes :func:`wrap_pg_error` maps (driver, socket and deadline)."""
    asyncpg = import_asyncpg()
    return (
        asyncpg.PostgresError,
        asyncpg.InterfaceError,
        asyncpg.InternalClientError,
        OSError,
        TimeoutError,
    )


# Driver errors that mean "the database is not answering now"; anything else is a StoreError.
_UNAVAILABLE_SQLSTATE = ("08", "53", "57", "55P03", "40001", "40P01")


def wrap_pg_error(exc: BaseException) -> StoreError:
    """Map an asyncpg or socket error to the library's error tree.

    Lost or refused connections, deadlines (client or ``statement_timeout``), a lock that could not
    be had, an administrator's ``pg_terminate_backend``, server shutdown, too many connections,
    and serialization failures become :class:`StoreUnavailableError` (callers apply their failure
    policy); anything else becomes :class:`StoreError`. The message names the error class only, so
    no address, credential or row value ends up in a log.

    Args:
        exc: the error raised by the driver.
    """
    if isinstance(exc, StoreError):
        return exc
    asyncpg = import_asyncpg()
    name = type(exc).__name__
    # InternalClientError: a connection whose server end was killed while it sat in the pool.
    if isinstance(
        exc, TimeoutError | OSError | asyncpg.InterfaceError | asyncpg.InternalClientError
    ):
        return StoreUnavailableError(f"postgresql unavailable: {name}")
    sqlstate = str(getattr(exc, "sqlstate", "") or "")
    if sqlstate.startswith(_UNAVAILABLE_SQLSTATE):
        return StoreUnavailableError(f"postgresql unavailable: {name}")
    return StoreError(f"postgresql error: {name}")


def _connection_suspect(exc: BaseException) -> bool:
    # An error the server sent on a healthy connection (a statement or lock timeout, a constraint)
    # leaves it reusable; no SQLSTATE, or a connection/shutdown class, means it may be gone.
    sqlstate = str(getattr(exc, "sqlstate", "") or "")
    return not sqlstate or sqlstate.startswith(("08", "57P"))


# --- migrations -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Migration:
    """One versioned schema change of a feature.

    Args:
        version: 1, 2, 3 ... in the order they apply (per feature).
        name: a short description, recorded with the version.
        sql: the statements, with ``{schema}``, ``{p}`` (schema-qualified table prefix, e.g.
            ``extapi.extapi_``) and ``{prefix}`` (the bare prefix, for index names, which take no
            schema) placeholders: ``CREATE TABLE {p}api_keys (...)``; literal braces doubled.
    """

    version: int
    name: str
    sql: str

    def render(self, config: PostgresConfig) -> str:
        """Return the SQL for a configured schema and prefix.

        Args:
            config: where the tables live.
        """
        return self.sql.format(
            schema=config.schema,
            p=f"{config.schema}.{config.table_prefix}",
            prefix=config.table_prefix,
        )


_MIGRATIONS: dict[str, tuple[Migration, ...]] = {}


def register_migrations(feature: str, migrations: Iterable[Migration]) -> None:
    """Declare a feature's migrations (each ``store_postgres`` module does it at import).

    Args:
        feature: the feature name (``"keys"``); it names the rows in the migrations table.
        migrations: versions 1..n in order; appending a new version is how the schema evolves.

    Raises:
        ConfigurationError: when the versions are not 1, 2, ..., n.
    """
    items = tuple(migrations)
    if [m.version for m in items] != list(range(1, len(items) + 1)):
        raise ConfigurationError(f"{feature} migrations must be numbered 1..n in order")
    _MIGRATIONS[feature] = items


def registered_migrations() -> dict[str, tuple[Migration, ...]]:
    """Return the registered migrations by feature (a copy)."""
    return dict(_MIGRATIONS)


def _lock_id(config: PostgresConfig) -> int:
    # One advisory lock per schema and prefix: stores of one database migrate one at a time.
    return zlib.crc32(f"extapi_kit:{config.schema}:{config.table_prefix}".encode())


def _bootstrap_sql(config: PostgresConfig) -> str:
    return (
        f"CREATE SCHEMA IF NOT EXISTS {config.schema};"
        f"CREATE TABLE IF NOT EXISTS {config.table('migrations')} ("
        "feature TEXT NOT NULL, version INTEGER NOT NULL, name TEXT NOT NULL, "
        "applied_at TIMESTAMPTZ NOT NULL DEFAULT now(), PRIMARY KEY (feature, version))"
    )


async def _applied(conn: asyncpg.Connection, config: PostgresConfig) -> dict[str, int]:
    exists = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", config.table("migrations"))
    if not exists:
        return {}
    rows = await conn.fetch(
        f"SELECT feature, max(version) AS v FROM {config.table('migrations')} GROUP BY feature"
    )
    return {r["feature"]: int(r["v"]) for r in rows}


async def migrate(
    conn: asyncpg.Connection, config: PostgresConfig, features: Sequence[str] | None = None
) -> dict[str, list[int]]:
    """Apply the missing migrations of ``features`` (default: all registered) in one transaction.

    Holds ``pg_advisory_xact_lock`` for the schema while it works, so concurrent callers (two
    workers starting at once, a deploy's ``db migrate`` and a live server) apply each version
    exactly once; the second caller waits, then finds nothing left to do. Idempotent.

    Args:
        conn: a connection (not inside a transaction).
        config: where the tables live.
        features: the features to migrate.

    Returns:
        the versions applied now, by feature (empty lists when already current).
    """
    names = list(_MIGRATIONS) if features is None else list(features)
    unknown = [f for f in names if f not in _MIGRATIONS]
    if unknown:
        raise ConfigurationError(f"no migrations registered for {', '.join(unknown)}")
    done: dict[str, list[int]] = {}
    async with conn.transaction():
        # Migrations may take longer than a request's statement: they get their own deadline.
        t = MIGRATION_TIMEOUT
        await conn.execute(f"SET LOCAL statement_timeout = {int(t * 1000)}", timeout=t)
        await conn.execute(f"SET LOCAL lock_timeout = {int(t * 1000)}", timeout=t)
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _lock_id(config), timeout=t)
        await conn.execute(_bootstrap_sql(config), timeout=t)
        current = await _applied(conn, config)
        for feature in names:
            done[feature] = []
            for m in _MIGRATIONS[feature]:
                if m.version <= current.get(feature, 0):
                    continue
                await conn.execute(m.render(config), timeout=t)
                await conn.execute(
                    f"INSERT INTO {config.table('migrations')} (feature, version, name) "
                    "VALUES ($1, $2, $3)",
                    feature,
                    m.version,
                    m.name,
                )
                done[feature].append(m.version)
    return done


async def migration_status(
    conn: asyncpg.Connection, config: PostgresConfig
) -> list[dict[str, Any]]:
    """Return ``{feature, current, latest, pending}`` for every registered feature.

    Args:
        conn: a connection.
        config: where the tables live.
    """
    current = await _applied(conn, config)
    out = []
    for feature, items in sorted(_MIGRATIONS.items()):
        have = current.get(feature, 0)
        out.append(
            {
                "feature": feature,
                "current": have,
                "latest": len(items),
                "pending": [m.version for m in items if m.version > have],
            }
        )
    return out


# --- the pool ---------------------------------------------------------------------------------


async def _keep_session(conn: Any) -> None:
    # asyncpg's default reset sends "SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *;
    # RESET ALL" on every release: one more round trip per statement we run. Our stores never
    # leave session state on a pooled connection (advisory locks are transaction-scoped, settings
    # are SET LOCAL, LISTEN uses its own connection), and asyncpg still rolls back an open
    # transaction before calling this, so there is nothing to reset.
    return None


@dataclass
class _State:
    pool: Any = None
    ready: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class PostgresDatabase:
    """One asyncpg pool with deadlines, the feature's migrations, and error mapping.

    The pool opens on first use (so building a store never needs the server), runs the migrations
    of ``features`` once, and reopens by itself after the server went away: dead connections are
    dropped by the pool and the next call connects again.

    Args:
        config: from :func:`parse_postgres_url`.
        features: the features whose migrations must be applied before the first statement.
        migrate_on_start: False when operators run ``extapi-kit db migrate`` ahead of deploys and
            servers must not change the schema (then a missing table is a :class:`StoreError`).
        server_settings: extra session settings of every connection (the webhook store's lease
            pool sets ``synchronous_commit=off``).
    """

    def __init__(
        self,
        config: PostgresConfig,
        *,
        features: Sequence[str] = (),
        migrate_on_start: bool = True,
        server_settings: dict[str, str] | None = None,
    ) -> None:
        self.config = config
        self._features = tuple(features)
        self._migrate = migrate_on_start
        self._settings = dict(server_settings or {})
        self._state = _State()
        self._closed = False

    def __repr__(self) -> str:
        return f"PostgresDatabase({self.config!r})"

    def _connect_kwargs(self) -> dict[str, Any]:
        c = self.config
        return {
            "timeout": c.connect_timeout,
            # Client-side deadline: a server that stopped answering (SIGSTOP, a dead network)
            # never sends the statement_timeout error, so the client gives up a little later.
            "command_timeout": c.statement_timeout + 0.5,
            "server_settings": {
                "statement_timeout": str(int(c.statement_timeout * 1000)),
                "lock_timeout": str(int(c.statement_timeout * 1000)),
                "idle_in_transaction_session_timeout": str(int(c.statement_timeout * 4000)),
                "application_name": "extapi_kit",
                # Our statements are short OLTP reads and writes. On a small table that was never
                # analyzed (a few webhook endpoints) the planner's guess pushed the outbox claim
                # past jit_above_cost, and compiling it took ~11 of its ~12.5 ms (bench/sql_paths).
                "jit": "off",
                **self._settings,
            },
        }

    async def _pool(self) -> Any:
        if self._closed:
            raise StoreError("postgresql store is closed")
        st = self._state
        if st.pool is not None and st.ready:
            return st.pool
        async with st.lock:
            if st.pool is None:
                asyncpg = import_asyncpg()
                c = self.config
                try:
                    async with asyncio.timeout(c.connect_timeout + c.pool_timeout):
                        st.pool = await asyncpg.create_pool(
                            c.dsn,
                            min_size=c.pool_min,
                            max_size=c.pool_max,
                            max_inactive_connection_lifetime=60.0,
                            reset=_keep_session,
                            **self._connect_kwargs(),
                        )
                except driver_errors() as exc:
                    raise wrap_pg_error(exc) from exc
            if not st.ready:
                if self._migrate and self._features:
                    await self._run_migrations(st.pool)
                st.ready = True
        return st.pool

    async def _run_migrations(self, pool: Any) -> None:
        try:
            async with pool.acquire(timeout=self.config.pool_timeout) as conn:
                await migrate(conn, self.config, self._features)
        except driver_errors() as exc:
            raise wrap_pg_error(exc) from exc

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        """Yield a pooled connection; driver errors become :class:`StoreError` subclasses.

        Acquiring waits at most ``pool_timeout`` seconds.
        """
        pool = await self._pool()
        try:
            async with pool.acquire(timeout=self.config.pool_timeout) as conn:
                try:
                    yield conn
                except driver_errors() as exc:
                    if _connection_suspect(exc):
                        conn.terminate()  # never hand a half-dead connection to the next caller
                    raise
        except driver_errors() as exc:
            raise wrap_pg_error(exc) from exc

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[asyncpg.Connection]:
        """Yield a pooled connection inside a transaction (commit on exit, rollback on error)."""
        async with self.connection() as conn, conn.transaction():
            yield conn

    async def run(self, fn: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """Run ``fn(connection)`` on a pooled connection and return its result.

        Args:
            fn: a coroutine function using the connection.
        """
        async with self.connection() as conn:
            return await fn(conn)

    async def execute(self, sql: str, *args: Any) -> int:
        """Execute one statement (``?`` placeholders) and return the number of rows it changed.

        Args:
            sql: the statement.
            *args: its parameters.
        """
        async with self.connection() as conn:
            status: str = await conn.execute(pg_sql(sql), *args)
        return rowcount(status)

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        """Run a query (``?`` placeholders) and return all rows.

        Args:
            sql: the query.
            *args: its parameters.
        """
        async with self.connection() as conn:
            return list(await conn.fetch(pg_sql(sql), *args))

    async def fetchrow(self, sql: str, *args: Any) -> Any:
        """Run a query (``?`` placeholders) and return the first row, or None.

        Args:
            sql: the query.
            *args: its parameters.
        """
        async with self.connection() as conn:
            return await conn.fetchrow(pg_sql(sql), *args)

    async def ping(self) -> bool:
        """Return True when the database answers a trivial query."""
        try:
            async with self.connection() as conn:
                await conn.fetchval("SELECT 1")
        except StoreError:
            return False
        return True

    async def aclose(self) -> None:
        """Close the pool (waits at most the statement timeout, then terminates)."""
        self._closed = True
        pool, self._state.pool = self._state.pool, None
        if pool is None:
            return
        try:
            async with asyncio.timeout(self.config.statement_timeout):
                await pool.close()
        except Exception:
            pool.terminate()


def rowcount(status: str) -> int:
    """Return the row count of an asyncpg command status (``"UPDATE 3"`` -> 3, ``"INSERT 0 1"``).

    Args:
        status: the status string ``Connection.execute`` returned.
    """
    tail = status.rsplit(" ", 1)[-1]
    return int(tail) if tail.isdigit() else 0


class PostgresStore:
    """What every PostgreSQL store shares: a pool for its feature, ``from_url`` and ``repr``.

    Args:
        config: where the tables live and the connection deadlines (:func:`parse_postgres_url`).
        migrate: create or upgrade the tables on first use (False when ``extapi-kit db migrate``
            runs ahead of deploys).
    """

    #: the feature whose migrations the pool applies (``"keys"``).
    FEATURE: ClassVar[str]
    #: constructor keyword arguments that :meth:`from_url` takes out of the URL options.
    OWN_OPTIONS: ClassVar[tuple[str, ...]] = ("migrate",)

    def __init__(self, config: PostgresConfig, *, migrate: bool = True) -> None:
        self._db = PostgresDatabase(config, features=[self.FEATURE], migrate_on_start=migrate)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Self:
        """Create a store from ``postgresql://`` / ``postgres://`` (``?schema=`` and deadlines).

        Args:
            url: the URL.
            **options: ``migrate`` (and ``clock`` where the store takes one); the rest go to
                :func:`~extapi_kit.stores._postgres.parse_postgres_url`.
        """
        own = {name: options.pop(name) for name in cls.OWN_OPTIONS if name in options}
        if "migrate" in own:
            own["migrate"] = bool(own["migrate"])
        return cls(parse_postgres_url(url, **options), **own)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._db.config!r})"
