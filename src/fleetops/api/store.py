"""The console's own data: users, API tokens, sessions and the append-only audit log.

One SQL layer over two engines: SQLite (embedded default, a file under the data dir) and
PostgreSQL (when the store setting is a ``postgresql://`` DSN), through the shared
connection layer :mod:`fleetops.core.sqldb`. Secrets never reach the database in
clear: passwords are argon2id hashes, tokens and session ids are SHA-256 digests (they are
256-bit random values, so a fast hash is enough).

The audit log is append-only twice over: a trigger in the database rejects UPDATE and
DELETE on it, and every row carries the SHA-256 of the previous row, so
:meth:`Store.verify_audit` detects a row removed or changed behind the database's back.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fleetops.core.errors import ValidationError
from fleetops.core.sqldb import Cursor, SqlDatabase, is_postgres

_USERNAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class User:
    id: int
    username: str
    role: str
    disabled: bool
    created_at: str


@dataclass(frozen=True, slots=True)
class Token:
    id: int
    user_id: int
    name: str
    prefix: str
    created_at: str
    expires_at: float | None
    revoked: bool


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    ts: str
    actor: str
    action: str
    target: str
    before: Any
    after: Any
    ip: str
    hash: str


class ConflictError(ValidationError):
    """A change that clashes with what the store holds (e.g. a username taken)."""


class NotFoundError(ValidationError):
    """A user, token or entry that does not exist."""


_DDL_COMMON = [
    """CREATE TABLE IF NOT EXISTS users (
        id {pk}, username TEXT NOT NULL UNIQUE, password_hash TEXT NOT NULL,
        role TEXT NOT NULL, disabled INTEGER NOT NULL DEFAULT 0, created_at TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS tokens (
        id {pk}, user_id BIGINT NOT NULL REFERENCES users(id), name TEXT NOT NULL,
        token_hash TEXT NOT NULL UNIQUE, prefix TEXT NOT NULL, created_at TEXT NOT NULL,
        expires_at DOUBLE PRECISION, revoked INTEGER NOT NULL DEFAULT 0)""",
    """CREATE TABLE IF NOT EXISTS sessions (
        id_hash TEXT PRIMARY KEY, user_id BIGINT NOT NULL REFERENCES users(id),
        csrf TEXT NOT NULL, created_at TEXT NOT NULL, expires_at DOUBLE PRECISION NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS audit (
        id {pk}, ts TEXT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
        target TEXT NOT NULL, before_json TEXT, after_json TEXT, ip TEXT NOT NULL,
        prev_hash TEXT NOT NULL, hash TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS audit_ts ON audit (ts)",
]
_DDL_SQLITE = [
    """CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
       BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END""",
    """CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
       BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END""",
]
_DDL_POSTGRES = [
    """CREATE OR REPLACE FUNCTION fleetops_audit_append_only() RETURNS trigger AS $$
       BEGIN RAISE EXCEPTION 'the audit log is append-only'; END $$ LANGUAGE plpgsql""",
    """CREATE OR REPLACE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON audit
       FOR EACH ROW EXECUTE FUNCTION fleetops_audit_append_only()""",
    """CREATE OR REPLACE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit
       FOR EACH STATEMENT EXECUTE FUNCTION fleetops_audit_append_only()""",
]


class Store:
    """Users, tokens, sessions and audit on SQLite or PostgreSQL (same SQL).

    One connection guarded by a lock: the console's own queries are point look-ups by
    primary key or unique index, microseconds each, so one connection is not the bottleneck.
    """

    def __init__(self, target: str, *, schema: str | None = None) -> None:
        self.target = target
        self.postgres = is_postgres(target)
        self._db = SqlDatabase.open(target, what="the console store", schema=schema)
        if self._db.dialect == "sqlite":
            pk, extra = "INTEGER PRIMARY KEY AUTOINCREMENT", _DDL_SQLITE
        else:
            pk, extra = "BIGSERIAL PRIMARY KEY", _DDL_POSTGRES
        with self.transaction():
            for statement in [*(s.format(pk=pk) for s in _DDL_COMMON), *extra]:
                self._execute(statement)

    def close(self) -> None:
        self._db.close()

    # -- SQL layer --------------------------------------------------------------------------

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        return self._db.execute(sql, params)

    def transaction(self) -> AbstractContextManager[None]:
        """Statements inside commit together, or not at all."""
        return self._db.transaction()

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[Sequence[Any]]:
        return self._db.query(sql, params)

    def _insert(self, sql: str, params: Sequence[Any]) -> int:
        row = self._execute(sql + " RETURNING id", params).fetchone()
        assert row is not None
        return int(row[0])

    # -- users ------------------------------------------------------------------------------

    def user_count(self) -> int:
        return int(self._query("SELECT count(*) FROM users")[0][0])

    def create_user(self, username: str, password_hash: str, role: str) -> User:
        if not _USERNAME.match(username):
            raise ValidationError(
                "a username is 1-64 letters, digits or . _ @ - (no spaces), got " + repr(username)
            )
        with self.transaction():
            if self._execute("SELECT 1 FROM users WHERE username = ?", [username]).fetchone():
                raise ConflictError(f"user {username!r} exists")
            uid = self._insert(
                "INSERT INTO users (username, password_hash, role, disabled, created_at) "
                "VALUES (?, ?, ?, 0, ?)",
                [username, password_hash, role, now_iso()],
            )
        return self.user(uid)

    def _user_row(self, row: Sequence[Any]) -> User:
        return User(int(row[0]), str(row[1]), str(row[2]), bool(row[3]), str(row[4]))

    def user(self, user_id: int) -> User:
        rows = self._query(
            "SELECT id, username, role, disabled, created_at FROM users WHERE id = ?", [user_id]
        )
        if not rows:
            raise NotFoundError(f"no user {user_id}")
        return self._user_row(rows[0])

    def users(self) -> list[User]:
        return [
            self._user_row(r)
            for r in self._query(
                "SELECT id, username, role, disabled, created_at FROM users ORDER BY id"
            )
        ]

    def credentials(self, username: str) -> tuple[User, str] | None:
        rows = self._query(
            "SELECT id, username, role, disabled, created_at, password_hash FROM users "
            "WHERE username = ?",
            [username],
        )
        return (self._user_row(rows[0]), str(rows[0][5])) if rows else None

    def update_user(
        self,
        user_id: int,
        *,
        role: str | None = None,
        disabled: bool | None = None,
        password_hash: str | None = None,
    ) -> User:
        with self.transaction():
            if role is not None:
                self._execute("UPDATE users SET role = ? WHERE id = ?", [role, user_id])
            if disabled is not None:
                self._execute(
                    "UPDATE users SET disabled = ? WHERE id = ?", [int(disabled), user_id]
                )
                if disabled:  # a disabled account keeps no way in
                    self._execute("DELETE FROM sessions WHERE user_id = ?", [user_id])
                    self._execute("UPDATE tokens SET revoked = 1 WHERE user_id = ?", [user_id])
            if password_hash is not None:
                self._execute(
                    "UPDATE users SET password_hash = ? WHERE id = ?", [password_hash, user_id]
                )
        return self.user(user_id)

    # -- API tokens -------------------------------------------------------------------------

    def create_token(self, user_id: int, name: str, secret: str, expires_at: float | None) -> Token:
        with self.transaction():
            tid = self._insert(
                "INSERT INTO tokens (user_id, name, token_hash, prefix, created_at, expires_at, "
                "revoked) VALUES (?, ?, ?, ?, ?, ?, 0)",
                [user_id, name, digest(secret), secret[:10], now_iso(), expires_at],
            )
        return self.token(tid)

    def _token_row(self, row: Sequence[Any]) -> Token:
        return Token(
            int(row[0]),
            int(row[1]),
            str(row[2]),
            str(row[3]),
            str(row[4]),
            None if row[5] is None else float(row[5]),
            bool(row[6]),
        )

    _TOKEN_COLUMNS = "id, user_id, name, prefix, created_at, expires_at, revoked"

    def token(self, token_id: int) -> Token:
        rows = self._query(f"SELECT {self._TOKEN_COLUMNS} FROM tokens WHERE id = ?", [token_id])
        if not rows:
            raise NotFoundError(f"no token {token_id}")
        return self._token_row(rows[0])

    def tokens(self, user_id: int | None = None) -> list[Token]:
        where, params = ("WHERE user_id = ?", [user_id]) if user_id is not None else ("", [])
        return [
            self._token_row(r)
            for r in self._query(
                f"SELECT {self._TOKEN_COLUMNS} FROM tokens {where} ORDER BY id", params
            )
        ]

    def revoke_token(self, token_id: int) -> Token:
        with self.transaction():
            self._execute("UPDATE tokens SET revoked = 1 WHERE id = ?", [token_id])
        return self.token(token_id)

    def user_by_token(self, secret: str) -> User | None:
        rows = self._query(
            "SELECT u.id, u.username, u.role, u.disabled, u.created_at FROM tokens t "
            "JOIN users u ON u.id = t.user_id WHERE t.token_hash = ? AND t.revoked = 0 "
            "AND (t.expires_at IS NULL OR t.expires_at > ?) AND u.disabled = 0",
            [digest(secret), time.time()],
        )
        return self._user_row(rows[0]) if rows else None

    # -- sessions ---------------------------------------------------------------------------

    def create_session(self, user_id: int, session_id: str, csrf: str, lifetime_s: float) -> None:
        with self.transaction():
            self._execute("DELETE FROM sessions WHERE expires_at < ?", [time.time()])
            self._execute(
                "INSERT INTO sessions (id_hash, user_id, csrf, created_at, expires_at) "
                "VALUES (?, ?, ?, ?, ?)",
                [digest(session_id), user_id, csrf, now_iso(), time.time() + lifetime_s],
            )

    def session(self, session_id: str) -> tuple[User, str] | None:
        """The session's user and CSRF token, if the session is live."""
        rows = self._query(
            "SELECT u.id, u.username, u.role, u.disabled, u.created_at, s.csrf FROM sessions s "
            "JOIN users u ON u.id = s.user_id WHERE s.id_hash = ? AND s.expires_at > ? "
            "AND u.disabled = 0",
            [digest(session_id), time.time()],
        )
        return (self._user_row(rows[0]), str(rows[0][5])) if rows else None

    def delete_session(self, session_id: str) -> None:
        with self.transaction():
            self._execute("DELETE FROM sessions WHERE id_hash = ?", [digest(session_id)])

    # -- audit ------------------------------------------------------------------------------

    def audit(
        self,
        actor: str,
        action: str,
        target: str,
        *,
        before: Any = None,
        after: Any = None,
        ip: str = "",
    ) -> AuditEntry:
        """Append one entry; its hash chains it to the previous one."""
        ts = now_iso()
        before_json = None if before is None else json.dumps(before, sort_keys=True, default=str)
        after_json = None if after is None else json.dumps(after, sort_keys=True, default=str)
        with self.transaction():
            if self.postgres:  # one appender at a time across server processes
                self._execute("SELECT pg_advisory_xact_lock(7313001)")
            last = self._execute("SELECT hash FROM audit ORDER BY id DESC LIMIT 1").fetchone()
            prev = str(last[0]) if last else ""
            entry_hash = _chain(prev, ts, actor, action, target, before_json, after_json, ip)
            aid = self._insert(
                "INSERT INTO audit (ts, actor, action, target, before_json, after_json, ip, "
                "prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [ts, actor, action, target, before_json, after_json, ip, prev, entry_hash],
            )
        return AuditEntry(aid, ts, actor, action, target, before, after, ip, entry_hash)

    def audit_entries(
        self,
        *,
        limit: int = 100,
        offset: int = 0,
        actor: str | None = None,
        action: str | None = None,
    ) -> tuple[int, list[AuditEntry]]:
        clauses, params = [], []
        if actor is not None:
            clauses.append("actor = ?")
            params.append(actor)
        if action is not None:
            clauses.append("action = ?")
            params.append(action)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        total = int(self._query(f"SELECT count(*) FROM audit {where}", params)[0][0])
        rows = self._query(
            "SELECT id, ts, actor, action, target, before_json, after_json, ip, hash FROM audit "
            f"{where} ORDER BY id DESC LIMIT ? OFFSET ?",
            [*params, limit, offset],
        )
        return total, [
            AuditEntry(
                int(r[0]),
                str(r[1]),
                str(r[2]),
                str(r[3]),
                str(r[4]),
                None if r[5] is None else json.loads(r[5]),
                None if r[6] is None else json.loads(r[6]),
                str(r[7]),
                str(r[8]),
            )
            for r in rows
        ]

    def verify_audit(self) -> int:
        """Check the hash chain; the number of entries, or ValidationError at the first break."""
        rows = self._query(
            "SELECT id, ts, actor, action, target, before_json, after_json, ip, prev_hash, hash "
            "FROM audit ORDER BY id"
        )
        prev = ""
        for r in rows:
            expected = _chain(prev, r[1], r[2], r[3], r[4], r[5], r[6], r[7])
            if r[8] != prev or r[9] != expected:
                raise ValidationError(f"audit chain broken at entry {r[0]}")
            prev = str(r[9])
        return len(rows)

    def audit_count(self) -> int:
        return int(self._query("SELECT count(*) FROM audit")[0][0])


def _chain(prev: str, *fields: Any) -> str:
    payload = json.dumps([prev, *fields], separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()
