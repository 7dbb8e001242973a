"""One SQL connection to SQLite (the embedded default) or PostgreSQL (a shared server).

The stores of the console and of the security operations centre write their statements
once, with ``?`` placeholders and portable types; this module opens the connection, keeps
the few dialect differences (placeholders, schema, transactions) and turns connection
failures into the project's errors: a file that cannot be opened is bad configuration
(exit 2), a server that does not answer is unavailable (exit 3).
"""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final, Literal, Protocol

from fleetops.core.errors import ConfigError, ServiceUnavailableError

Dialect = Literal["sqlite", "postgresql"]
_POSTGRES_SCHEMES: Final = ("postgresql://", "postgres://")
_SCHEMA_NAME: Final = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class Cursor(Protocol):
    description: Any

    def fetchall(self) -> Sequence[Sequence[Any]]: ...
    def fetchone(self) -> Sequence[Any] | None: ...


def is_postgres(target: str | Path) -> bool:
    return isinstance(target, str) and target.startswith(_POSTGRES_SCHEMES)


def redact(dsn: str) -> str:
    """The DSN without its password."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", re.sub(r"password=\S+", "password=***", dsn))


class SqlDatabase:
    """A connection shared by threads under one lock; statements use ``?`` placeholders.

    >>> db = SqlDatabase.open("console.sqlite", what="the console store")  # doctest: +SKIP
    >>> with db.transaction():                                              # doctest: +SKIP
    ...     db.execute("INSERT INTO t (a) VALUES (?)", (1,))
    """

    def __init__(self, conn: Any, dialect: Dialect, where: str) -> None:
        self._conn = conn
        self.dialect: Dialect = dialect
        self.where = where  # for messages: the file, or the DSN without its password
        self._lock = threading.RLock()

    @classmethod
    def open(cls, target: str | Path, *, what: str, schema: str | None = None) -> SqlDatabase:
        """PostgreSQL when ``target`` is a ``postgresql://`` DSN, else the SQLite file."""
        if is_postgres(target):
            return cls.postgresql(str(target), what=what, schema=schema)
        return cls.sqlite(target, what=what)

    @classmethod
    def sqlite(cls, path: str | Path, *, what: str) -> SqlDatabase:
        target = Path(path)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                target, timeout=30, check_same_thread=False, isolation_level=None
            )
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"cannot open {what} {target}: {exc}") from exc
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA foreign_keys = ON")
        return cls(conn, "sqlite", str(target))

    @classmethod
    def postgresql(cls, dsn: str, *, what: str, schema: str | None = None) -> SqlDatabase:
        """``schema`` (created if needed) keeps the tables apart from others' in one database."""
        import psycopg

        if schema is not None and not _SCHEMA_NAME.match(schema):
            raise ConfigError(f"{schema!r} is not a valid PostgreSQL schema name")
        try:
            conn = psycopg.connect(dsn, autocommit=True, connect_timeout=10)
        except psycopg.OperationalError as exc:
            raise ServiceUnavailableError(
                f"{what}: PostgreSQL at {redact(dsn)} is unreachable: {exc}"
            ) from exc
        except psycopg.ProgrammingError as exc:
            raise ConfigError(f"{what}: bad PostgreSQL DSN {redact(dsn)}: {exc}") from exc
        if schema is not None:
            conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            conn.execute(f'SET search_path TO "{schema}"')
        return cls(conn, "postgresql", redact(dsn) + (f" (schema {schema})" if schema else ""))

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def execute(self, statement: str, params: Sequence[Any] = ()) -> Cursor:
        """One statement; inside :meth:`transaction` it belongs to that transaction."""
        if self.dialect == "postgresql":
            statement = statement.replace("?", "%s")
        with self._lock:
            cursor: Cursor = self._conn.execute(statement, tuple(params))
            return cursor

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Statements inside commit together, or not at all; other threads wait."""
        with self._lock:
            if self.dialect == "postgresql":
                with self._conn.transaction():
                    yield
                return
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def query(self, statement: str, params: Sequence[Any] = ()) -> list[Sequence[Any]]:
        with self._lock:
            return list(self.execute(statement, params).fetchall())

    def query_dicts(self, statement: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        with self._lock:
            cursor = self.execute(statement, params)
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
