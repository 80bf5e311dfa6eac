"""`PostgresSecrets`: a secrets provider on a PostgreSQL server, for sessions shared by a fleet.

Two tables, created when missing: ``<table>`` (name, sealed value, time of the last
write) and ``<table>_leases`` (name, holder id, expiry). The refresh lease is a row, taken
by one short statement (``INSERT ... ON CONFLICT DO UPDATE ... WHERE expires_at <= now``)
with the server's clock, and released by deleting the row only where the holder id is
still ours. No session-level advisory lock: a connection pool or a proxy (pgbouncer in
transaction mode) can hand the session to someone else, or drop it, and the lock with it.

A compare-and-set runs in one transaction: ``SELECT ... FOR UPDATE`` of the entry, open it
and compare it in the clear (encryption is randomized), then ``UPDATE ... WHERE value =
<the stored value read>``.

psycopg (3) is imported when the first `PostgresSecrets` is made, never by
``import oauth_auth``. Each instance keeps one connection per process, used by one thread
at a time, reopened after a failure (and after a fork).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from ._fleet import FleetSecrets
from ._lease import describe_holder, lease_seconds
from ._scrub import scrubs
from ._sealing import EncryptionKey, Sealer
from .errors import ConfigError, SecretsError

__all__ = ["PostgresSecrets"]

log = logging.getLogger("oauth_auth")

_T = TypeVar("_T")

#: Seconds allowed for connecting and for each statement before it is a `SecretsError`.
DEFAULT_TIMEOUT = 5.0
_TABLE = re.compile(r"^(?:[A-Za-z_][A-Za-z0-9_]{0,40}\.)?[A-Za-z_][A-Za-z0-9_]{0,40}$")


class PostgresSecrets(FleetSecrets):
    """Secrets in a PostgreSQL table, encrypted at rest, with a lease lock and compare-and-set.

    With it as the `secrets_provider` of every host's token source, the guarantees of the
    file lock hold across hosts: one refresh per expiry, no `invalid_grant` from a race,
    the newest refresh token stored. Safe for concurrent use by threads (one connection,
    one statement at a time) and processes.

    Args:
        dsn: a libpq connection string or URL (``postgresql://user@host:5432/db``).
        table: the table of the entries (``schema.table`` allowed); its leases live in
            ``<table>_leases``. Both are created when missing.
        encryption_key: a Fernet key or a list of them (first encrypts, all decrypt).
        allow_plaintext: store values unencrypted when no key is given.
        lock_lease: seconds a refresh lease lasts if its holder never releases it
            (None: `DEFAULT_LOCK_LEASE`, longer than a whole refresh may take).
        timeout: seconds for connecting and for each statement.

    Raises:
        ConfigError: no key and plaintext not allowed, a bad key, DSN or table name, or
            psycopg missing (``pip install 'oauth-auth[postgres]'``).
    """

    writable = True

    def __init__(
        self,
        dsn: str,
        *,
        table: str = "oauth_auth_secrets",
        encryption_key: EncryptionKey | None = None,
        allow_plaintext: bool = False,
        lock_lease: float | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        if not isinstance(table, str) or not _TABLE.match(table):
            raise ConfigError(
                f"table {table!r} is not a plain SQL name",
                hint="use letters, digits and underscores, optionally schema.table",
            )
        self._sealer = Sealer(encryption_key, allow_plaintext=allow_plaintext,
                              store="PostgresSecrets")
        self.lock_lease = lease_seconds(lock_lease)
        self.table = table
        self._timeout = float(timeout)
        try:
            import psycopg
            from psycopg import sql
        except ImportError:
            raise ConfigError(
                "PostgresSecrets needs psycopg 3, which is not installed",
                hint="pip install 'oauth-auth[postgres]'",
            ) from None
        if not isinstance(dsn, str) or not dsn.strip():
            raise ConfigError("PostgresSecrets needs a DSN such as postgresql://host/db")
        try:
            info = psycopg.conninfo.conninfo_to_dict(dsn)
        except psycopg.Error:
            raise ConfigError(
                "PostgresSecrets: the DSN is not a libpq connection string or URL",
                hint="use postgresql://user@host:5432/dbname or 'host=... dbname=...'",
            ) from None
        self.where = _describe(info)
        self._dsn = dsn
        self._psycopg = psycopg
        schema, _, base = table.rpartition(".")
        names = (schema, base) if schema else (base,)
        leases = (*names[:-1], base + "_leases")
        t, lt = sql.Identifier(*names), sql.Identifier(*leases)
        self._sql = {
            "get": sql.SQL("SELECT value FROM {} WHERE name = %s").format(t),
            "lock": sql.SQL("SELECT value FROM {} WHERE name = %s FOR UPDATE").format(t),
            "set": sql.SQL(
                "INSERT INTO {} (name, value) VALUES (%s, %s) ON CONFLICT (name)"
                " DO UPDATE SET value = EXCLUDED.value, updated_at = now()").format(t),
            "insert": sql.SQL("INSERT INTO {} (name, value) VALUES (%s, %s)"
                              " ON CONFLICT (name) DO NOTHING").format(t),
            "update": sql.SQL("UPDATE {} SET value = %s, updated_at = now()"
                              " WHERE name = %s AND value = %s").format(t),
            "delete": sql.SQL("DELETE FROM {} WHERE name = %s").format(t),
            "delete_if": sql.SQL("DELETE FROM {} WHERE name = %s AND value = %s").format(t),
            "take": sql.SQL(
                "INSERT INTO {0} (name, holder, expires_at) VALUES"
                " (%s, %s, clock_timestamp() + make_interval(secs => %s))"
                " ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder,"
                " expires_at = EXCLUDED.expires_at WHERE {0}.expires_at <= clock_timestamp()"
                " RETURNING holder").format(lt),
            "holder": sql.SQL("SELECT holder FROM {} WHERE name = %s"
                              " AND expires_at > clock_timestamp()").format(lt),
            "release": sql.SQL("DELETE FROM {} WHERE name = %s AND holder = %s").format(lt),
            # Still our row: nobody took the lease since (taking replaces the holder), so
            # it may be renewed even if it ran out meanwhile.
            "renew": sql.SQL(
                "UPDATE {} SET expires_at = clock_timestamp() + make_interval(secs => %s)"
                " WHERE name = %s AND holder = %s").format(lt),
            "create": sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (name text PRIMARY KEY, value text NOT NULL,"
                " updated_at timestamptz NOT NULL DEFAULT now())").format(t),
            "create_leases": sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (name text PRIMARY KEY, holder text NOT NULL,"
                " expires_at timestamptz NOT NULL)").format(lt),
        }
        self._lock = threading.Lock()
        self._conn: Any = None
        self._pid = os.getpid()

    # ------------------------------------------------------------------ SecretsProvider

    @scrubs
    def set_secret(self, name: str, value: str) -> None:
        sealed = self._sealer.seal(name, value)
        self._run("store", name, lambda c: c.execute(self._sql["set"], (name, sealed)))

    @scrubs
    def delete_secret(self, name: str) -> None:
        self._run("delete", name, lambda c: c.execute(self._sql["delete"], (name,)))

    # ------------------------------------------------------------------ fleet primitives

    def get_stored(self, name: str) -> str | None:
        """The stored (sealed) form of `name`, or None."""
        row = self._run("read", name,
                        lambda c: c.execute(self._sql["get"], (name,)).fetchone())
        return None if row is None else str(row[0])

    def _conditional(self, name: str, expected: str | None, value: str | None) -> bool:
        """Write `value` (None deletes) only if `name` holds `expected`, in one
        transaction: the row is locked, opened, compared in the clear (encryption is
        randomized), and written only where it still holds the stored bytes read."""

        def step(conn: Any) -> bool:
            with conn.transaction():
                row = conn.execute(self._sql["lock"], (name,)).fetchone()
                stored = None if row is None else str(row[0])
                current = None if stored is None else self._sealer.open(name, stored)
                if (current or None) == (value or None):
                    return True
                if (current or None) != (expected or None):
                    return False
                if value is None:
                    cursor = conn.execute(self._sql["delete_if"], (name, stored))
                elif stored is None:
                    cursor = conn.execute(self._sql["insert"],
                                          (name, self._sealer.seal(name, value)))
                else:
                    cursor = conn.execute(self._sql["update"],
                                          (self._sealer.seal(name, value), name, stored))
                return bool(cursor.rowcount == 1)

        return self._run("compare-and-set", name, step)

    def try_lease(self, name: str, holder: str, seconds: float) -> str | None:
        """Take the lease of `name` (see `_lease.LeaseBackend`)."""

        def step(conn: Any) -> str | None:
            if conn.execute(self._sql["take"], (name, holder, seconds)).fetchone():
                return None
            row = conn.execute(self._sql["holder"], (name,)).fetchone()
            return "" if row is None else str(row[0])

        return self._run("take the lease of", name, step)

    def release_lease(self, name: str, holder: str) -> None:
        """Delete the lease of `name` only if `holder` holds it."""
        self._run("release the lease of", name,
                  lambda c: c.execute(self._sql["release"], (name, holder)))

    def renew_lease(self, name: str, holder: str, seconds: float) -> bool:
        """Extend the lease of `name` to `seconds` from now only if `holder` holds it."""
        cursor = self._run("renew the lease of", name,
                           lambda c: c.execute(self._sql["renew"], (seconds, name, holder)))
        return bool(cursor.rowcount == 1)

    def lease_holder(self, name: str) -> str | None:
        """Who holds the lease of `name` now ('process P on host H'), or None."""
        row = self._run("read the lease of", name,
                        lambda c: c.execute(self._sql["holder"], (name,)).fetchone())
        return None if row is None else describe_holder(str(row[0]))

    def close(self) -> None:
        """Close the connection (a later call opens a new one)."""
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None and self._pid == os.getpid():
            conn.close()

    # ------------------------------------------------------------------ plumbing

    def _connection(self) -> tuple[Any, bool]:
        """(connection, whether it is new); caller holds `self._lock`."""
        if self._pid != os.getpid():  # forked: the parent's connection is not ours to use
            self._conn, self._pid = None, os.getpid()
        if self._conn is not None and not self._conn.closed:
            return self._conn, False
        millis = max(1, int(self._timeout * 1000))
        conn = self._psycopg.connect(
            self._dsn, autocommit=True, connect_timeout=max(1, round(self._timeout)),
            keepalives=1, keepalives_idle=30, tcp_user_timeout=millis,
            application_name="oauth-auth",
        )
        conn.execute(f"SET statement_timeout = {millis}")
        self._conn = conn
        return conn, True

    def _create_tables(self, conn: Any) -> None:
        errors = self._psycopg.errors
        for statement in ("create", "create_leases"):
            # Another process may create it at the same moment.
            with contextlib.suppress(errors.UniqueViolation, errors.DuplicateTable):
                conn.execute(self._sql[statement])
        log.info("created the tables of PostgresSecrets (%s) on %s", self.table, self.where)

    def _run(self, action: str, name: str, step: Callable[[Any], _T]) -> _T:
        psycopg = self._psycopg
        failure: SecretsError | None = None
        created = False
        for _ in range(3):
            reused = False
            try:
                with self._lock:
                    conn, new = self._connection()
                    reused = not new
                    try:
                        return step(conn)
                    except psycopg.errors.UndefinedTable:
                        if created:
                            raise
                        self._create_tables(conn)
                        created = True
                        continue
            except psycopg.OperationalError as exc:
                self._drop()
                if reused and not isinstance(exc, psycopg.errors.QueryCanceled):
                    continue  # a stale connection (server restarted): one more, fresh
                failure = self._failure(action, name, exc)
            except psycopg.Error as exc:
                failure = self._failure(action, name, exc)
            break
        if failure is None:  # pragma: no cover - the loop always ends with a failure
            failure = SecretsError(f"PostgresSecrets could not {action} {name!r}")
        raise failure  # outside the handler: no chained traceback with the statement's args

    def _drop(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(self._psycopg.Error):  # already broken
                conn.close()

    def _failure(self, action: str, name: str, exc: BaseException) -> SecretsError:
        errors = self._psycopg.errors
        kind = type(exc).__name__
        detail = (str(exc).strip().splitlines() or [""])[0][:200]
        if isinstance(exc, errors.QueryCanceled):
            hint = (f"a statement took more than {self._timeout:g} s; check the server's"
                    " load and locks (the stored session is kept), then try again")
        elif isinstance(exc, errors.InsufficientPrivilege):
            hint = (f"grant the user SELECT, INSERT, UPDATE, DELETE on {self.table} and"
                    f" {self.table}_leases (and CREATE on the schema, to create them)")
        elif isinstance(exc, errors.InvalidPassword | errors.InvalidAuthorizationSpecification):
            hint = "check the user name and password of the DSN"
        elif isinstance(exc, self._psycopg.OperationalError):
            hint = ("check that the PostgreSQL server is running and reachable from this"
                    " host; the stored session is kept, so the next call works once it is back")
        else:
            hint = "check the PostgreSQL server's log; the stored session is kept"
        log.debug("PostgreSQL %s %s failed: %s", action, name, kind)
        return SecretsError(
            f"PostgresSecrets could not {action} {name!r} on {self.where}: {kind}: {detail}",
            hint=hint,
        )

    def __repr__(self) -> str:
        mode = "encrypted" if self._sealer.encrypted else "PLAINTEXT"
        return (f"PostgresSecrets({self.where!r}, table={self.table!r}, {mode},"
                f" lock_lease={self.lock_lease:g})")


def _describe(info: dict[str, Any]) -> str:
    """postgresql://user@host:port/dbname from a parsed DSN, without the password."""
    host = str(info.get("host") or info.get("hostaddr") or "localhost")
    port = info.get("port")
    user = info.get("user")
    where = f"{user}@{host}" if user else host
    if port:
        where += f":{port}"
    return f"postgresql://{where}/{info.get('dbname') or ''}"
