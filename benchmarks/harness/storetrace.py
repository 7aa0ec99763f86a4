"""``--trace-store FILE``: every database transaction of a run, timed, one JSON line each.

The store that :func:`batchrunner.api.run` opens is not reachable from outside: ``tune`` sees the
engine's options and parts, not the store, and wrapping ``Store`` methods would mean assigning to a class
of batchrunner's. So the trace listens where SQLAlchemy offers public events, on every engine and pool of
the process (``event.listen(Pool, ...)``, ``event.listen(Engine, ...)``):

- a pool ``checkout`` .. ``checkin`` is one use of a connection, that is one ``Database.write()`` or
  ``read()`` block: one store call's transaction (pool waits are not included). It is written as
  ``{"event": LABEL, "t": start, "s": seconds, "sql": [...]}`` with ``t`` in Unix seconds, the
  statements' heads in ``sql`` (``"UPDATE jobs"``, ``"INSERT attempts"``...) and ``LABEL`` the distinct
  heads joined by ``+`` (what the store call did, as a store method name said before);
- a new DBAPI connection (pool ``connect``: opening the file, the PRAGMAs) is an instant ``connect``.

Statements run on the driver connection directly (submit's and export's ``executemany``) are inside their
transaction's time but not named in its ``sql``. The launcher writes ``{"event": "imported", "t": ...}``
first, so start-up splits into interpreter + imports, each transaction, and the rest.
"""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path
from typing import Any, TextIO

_HEAD_WORDS = {"FROM", "INTO", "UPDATE"}


def statement_head(sql: str) -> str:
    """``SELECT jobs`` for ``SELECT ... FROM jobs ...``: the verb and the first table named."""
    words = sql.replace("(", " ").replace(",", " ").split()
    if not words:
        return "?"
    verb = words[0].upper()
    for before, word in itertools.pairwise(words):
        if before.upper() in _HEAD_WORDS and word.upper() != "SELECT":  # not a subquery
            table = word.strip('"')
            return f"{verb} {table}"
    return verb


class StoreTrace:
    """The listeners; :meth:`start` registers them on SQLAlchemy's ``Pool`` and ``Engine`` classes."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self._open: dict[int, tuple[float, list[str]]] = {}
        """By DBAPI connection: when it was checked out, the heads of its statements since."""

    def write(self, event: str, t: float, **fields: Any) -> None:
        self.out.write(json.dumps({"event": event, "t": t, **fields}) + "\n")

    def on_connect(self, dbapi_connection: Any, _record: Any) -> None:
        self.write("connect", time.time())

    def on_checkout(self, dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        self._open[id(dbapi_connection)] = (time.time(), [])

    def on_statement(self, conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        entry = self._open.get(id(conn.connection.dbapi_connection))
        if entry is not None:
            entry[1].append(statement_head(statement))

    def on_checkin(self, dbapi_connection: Any, _record: Any) -> None:
        entry = self._open.pop(id(dbapi_connection), None)
        if entry is None:
            return
        start, heads = entry
        named = [head for head in heads if head.split()[0] not in ("BEGIN", "PRAGMA")]
        label = "+".join(dict.fromkeys(named)) or "(no statement)"
        self.write(label, start, s=round(time.time() - start, 6), sql=heads)

    def start(self) -> None:
        from sqlalchemy import event
        from sqlalchemy.engine import Engine
        from sqlalchemy.pool import Pool

        event.listen(Pool, "connect", self.on_connect)
        event.listen(Pool, "checkout", self.on_checkout)
        event.listen(Pool, "checkin", self.on_checkin)
        event.listen(Engine, "before_cursor_execute", self.on_statement)


def start(path: Path) -> StoreTrace:
    """Trace into ``path`` (appended, line-buffered) from now on."""
    trace = StoreTrace(path.open("a", buffering=1))
    trace.start()
    return trace
