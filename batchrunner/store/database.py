"""Connecting to the job database, and every dialect-specific detail in one place.

SQLite (the embedded default) follows docs/reliability.md rule 4: WAL, ``synchronous=FULL``, a busy timeout,
foreign keys, and ``BEGIN IMMEDIATE`` for every transaction that may write, through one writer connection
per process; reads use their own pool and plain (deferred) transactions so that status and export never
wait for the writer. The database file and its ``-wal``/``-shm`` companions are created with mode 0600,
since they hold prompts and answers (SQLite gives the companions the database file's mode).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import BigInteger, ColumnElement, Select, cast, event, func, literal
from sqlalchemy.engine import make_url
from sqlalchemy.engine.url import URL
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool

from batchrunner.errors import StoreError, StoreFullError, UsageError
from batchrunner.store.tables import UTCDateTime

BUSY_TIMEOUT_MS = 30_000

SQLITE_PRAGMAS: dict[str, str] = {
    "journal_mode": "wal",
    "busy_timeout": str(BUSY_TIMEOUT_MS),
    "synchronous": "FULL",
    "foreign_keys": "ON",
}
"""Set on every SQLite connection, and asserted by a test. ``synchronous=FULL``: a committed checkpoint
survives a power loss; the run engine groups checkpoints into one commit so the fsync is paid per group."""


def int_sum(column: ColumnElement[Any], where: ColumnElement[bool] | None = None) -> ColumnElement[int]:
    """``sum(column)`` of integers (over the rows ``where`` holds, when given), 0 over no rows, read back
    as an ``int`` on both backends.

    PostgreSQL sums a ``bigint`` into a ``numeric``, which asyncpg hands over as a ``Decimal`` (that
    ``json`` refuses and arithmetic with floats rejects); the cast keeps it an integer.
    """
    total = func.sum(column) if where is None else func.sum(column).filter(where)
    return cast(func.coalesce(total, 0), BigInteger)


def utcnow() -> datetime:
    """Now, timezone-aware UTC: the only clock the store uses on SQLite."""
    return datetime.now(UTC)


def resolve_url(target: str) -> URL:
    """Turn ``--db`` (a file path or a SQLAlchemy URL) into an async SQLAlchemy URL."""
    if "://" not in target:
        return URL.create("sqlite+aiosqlite", database=str(Path(target).expanduser()))
    try:
        url = make_url(target)
    except ArgumentError as exc:
        raise UsageError(f"--db: not a database path or URL: {target!r}") from exc
    if url.get_backend_name() == "sqlite":
        return url.set(drivername="sqlite+aiosqlite")
    if url.get_backend_name() == "postgresql":
        return url.set(drivername="postgresql+asyncpg")
    raise UsageError(
        f"--db: unsupported database {url.get_backend_name()!r} (use a SQLite path or postgresql://)"
    )


class Database:
    """The engines for one database: a writer and a reader pool (the same pool on PostgreSQL)."""

    def __init__(self, url: URL) -> None:
        self.url = url
        self.dialect = url.get_backend_name()
        if self.dialect == "sqlite":
            path = url.database
            if path and path != ":memory:":
                _create_private_file(Path(path))
            self.writer = _sqlite_engine(url, immediate=True, pool_size=1)
            self.reader = _sqlite_engine(url, immediate=False, pool_size=4)
        else:
            self.writer = create_async_engine(url, pool_size=5, max_overflow=5, pool_pre_ping=True)
            self.reader = self.writer

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction (``BEGIN IMMEDIATE`` on SQLite), committed on success."""
        with self.translate_errors():
            async with self.writer.begin() as conn:
                yield conn

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A short read-only transaction."""
        with self.translate_errors():
            async with self.reader.connect() as conn:
                yield conn

    @contextmanager
    def translate_errors(self) -> Iterator[None]:
        """Driver errors become StoreError (STYLE habit 8): one line for the user, the cause chained."""
        try:
            yield
        except DBAPIError as exc:
            raise store_error(self.url, exc.orig if exc.orig is not None else exc) from exc

    async def dispose(self) -> None:
        await self.writer.dispose()
        if self.reader is not self.writer:
            await self.reader.dispose()

    def clock(self, offset_s: float = 0.0) -> ColumnElement[datetime]:
        """Now (plus ``offset_s``) as SQL, for leases and heartbeats (docs/reliability.md rule 3).

        On PostgreSQL it is the database's clock, the one clock every machine's runners share; on SQLite
        (one machine) it is this process's clock, bound as a value.
        """
        if self.is_sqlite:
            return literal(utcnow() + timedelta(seconds=offset_s), UTCDateTime())
        now: ColumnElement[datetime] = func.now()
        return now + timedelta(seconds=offset_s) if offset_s else now

    def insert_statement_ignoring_conflicts(self, table: Any, *conflict_columns: str) -> Any:
        """``INSERT ... ON CONFLICT (cols) DO NOTHING`` in this dialect (values to be added)."""
        # the dialect's module by name: a SQLite run need not import PostgreSQL's (45 ms, measured)
        dialect_module: Any = importlib.import_module(f"sqlalchemy.dialects.{self.dialect}")
        return dialect_module.insert(table).on_conflict_do_nothing(index_elements=list(conflict_columns))

    async def upsert_adding(
        self,
        conn: AsyncConnection,
        table: Any,
        rows: list[dict[str, Any]],
        keys: tuple[str, ...],
        column: str,
    ) -> None:
        """Insert ``rows``; where a row with the same ``keys`` exists, add to its ``column`` instead."""
        dialect_module: Any = importlib.import_module(f"sqlalchemy.dialects.{self.dialect}")
        stmt = dialect_module.insert(table)
        stmt = stmt.on_conflict_do_update(
            index_elements=list(keys), set_={column: table.c[column] + stmt.excluded[column]}
        )
        await conn.execute(stmt, rows)

    async def insert_ignoring_conflicts(
        self, conn: AsyncConnection, table: Any, rows: list[dict[str, Any]], *conflict_columns: str
    ) -> int:
        """``INSERT ... ON CONFLICT (cols) DO NOTHING`` for many rows; return how many were inserted.

        SQLite's executemany reports the inserted count; asyncpg's does not, so there the inserted rows
        are counted from ``RETURNING`` (which SQLAlchemy batches into multi-row statements).
        """
        stmt = self.insert_statement_ignoring_conflicts(table, *conflict_columns)
        if self.is_sqlite:
            return max((await conn.execute(stmt, rows)).rowcount, 0)
        key = table.c[conflict_columns[-1]]
        return len((await conn.execute(stmt.returning(key), rows)).all())

    def lock_for_claim(self, select: Select[Any]) -> Select[Any]:
        """Rows picked for a claim: ``FOR UPDATE SKIP LOCKED`` on PostgreSQL (SQLite: the write lock)."""
        return select if self.is_sqlite else select.with_for_update(skip_locked=True)

    def lock_rows(self, select: Select[Any]) -> Select[Any]:
        """Rows that must be read as they are, waiting for any writer: ``FOR UPDATE`` on PostgreSQL.

        Never ``SKIP LOCKED`` for the lease fence: a row locked by a concurrent heartbeat (which renews
        the same leases) would be skipped and its answer dropped as "lease lost", leaving the job
        ``running`` under a live runner forever (seen in the 4-runner benchmark).
        """
        return select if self.is_sqlite else select.with_for_update()


def sqlite_file_to_create(target: str) -> Path | None:
    """The SQLite file that opening ``target`` would create (None: it exists, or it is not SQLite)."""
    url = resolve_url(target)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    path = Path(url.database)
    return None if path.exists() else path


def remove_sqlite_file(path: Path) -> None:
    """Remove a SQLite database with its -wal, -shm and -journal files."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def store_error(url: URL, cause: BaseException) -> StoreError:
    """The StoreError for a driver or OS error, with what to do about the common ones."""
    where = url.database if url.get_backend_name() == "sqlite" else url.render_as_string(hide_password=True)
    reason = str(cause).strip() or type(cause).__name__
    lowered = reason.lower()
    if "full" in lowered:
        return StoreFullError(f"the database {where} is full ({reason}): free disk space, then run again")
    if "readonly" in lowered or "read-only" in lowered or "unable to open database file" in lowered:
        return StoreError(
            f"cannot write the database {where} ({reason}): is it on a read-only filesystem, "
            "or is its directory not writable? SQLite needs to create -wal and -shm files beside it"
        )
    return StoreError(f"database {where}: {reason}")


def _create_private_file(path: Path) -> None:
    """Create the database file with mode 0600 before SQLite opens it (its -wal/-shm inherit the mode)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return
    os.close(fd)


def _sqlite_engine(url: URL, *, immediate: bool, pool_size: int) -> AsyncEngine:
    engine = create_async_engine(
        url,
        poolclass=AsyncAdaptedQueuePool,
        pool_size=pool_size,
        max_overflow=0,
        connect_args={"timeout": BUSY_TIMEOUT_MS / 1000},
    )
    begin_statement = "BEGIN IMMEDIATE" if immediate else "BEGIN"

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from the driver so that we can say BEGIN IMMEDIATE ourselves.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for name, value in SQLITE_PRAGMAS.items():
            cursor.execute(f"PRAGMA {name}={value}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql(begin_statement)

    return engine
