"""RedisSecrets and PostgresSecrets against real servers on 127.0.0.1.

Each behaviour of the two stores, proven on Debian's redis-server and PostgreSQL
(tests/support/redis_server.py, postgres_server.py): the provider contract, encryption
at rest (nothing readable on the server), compare-and-set and its race, the lease and its
expiry across "hosts" (separate store objects), typed errors with hints when the server is
down, hangs or drops the connection, and that the next call works once it is back.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from oauth_auth import ConfigError, LockTimeoutError, PostgresSecrets, RedisSecrets, SecretsError
from oauth_auth._sealing import generate_key
from tests.support.hygiene import LEDGER
from tests.support.postgres_server import PostgresServer
from tests.support.redis_server import RedisServer

KEY = generate_key()
TOKEN = "rt-" + "x" * 40
NEWER = "rt-" + "y" * 40
for _value, _label in ((KEY, "encryption key"), (TOKEN, "stored token"), (NEWER, "newer token")):
    LEDGER.secret(_value, _label)  # none may appear in any message, log or repr of the run

Store = Any  # RedisSecrets | PostgresSecrets


def raw_values(store: Store) -> list[str]:
    """Every value the server holds for this store, as stored (what an operator sees)."""
    if isinstance(store, RedisSecrets):
        import redis

        client = redis.Redis.from_url(store_url[id(store)], decode_responses=True)
        try:
            return [str(client.get(k)) for k in client.keys(store.namespace + ":*")]
        finally:
            client.close()
    import psycopg
    from psycopg import sql

    query = sql.SQL("SELECT value FROM {}").format(sql.Identifier(store.table))
    with psycopg.connect(store_url[id(store)]) as conn:
        return [str(r[0]) for r in conn.execute(query)]


store_url: dict[int, str] = {}


@pytest.fixture(params=["redis", "postgres"])
def make(request: pytest.FixtureRequest) -> Iterator[Callable[..., Store]]:
    """make(**options) -> a store of this test's own on the session's server."""
    made: list[Store] = []
    unique = "t" + uuid.uuid4().hex[:10]

    def factory(**options: Any) -> Store:
        options.setdefault("encryption_key", KEY)
        if request.param == "redis":
            server: RedisServer = request.getfixturevalue("redis_server")
            url = options.pop("url", server.url)
            store: Store = RedisSecrets(url, namespace=unique, **options)
        else:
            pg: PostgresServer = request.getfixturevalue("postgres_server")
            url = options.pop("url", pg.dsn)
            store = PostgresSecrets(url, table=unique, **options)
        store_url[id(store)] = url
        made.append(store)
        return store

    yield factory
    for store in made:
        store.close()


def test_the_provider_contract(make: Callable[..., Store]) -> None:
    store = make()
    assert store.get_secret("K") is None
    store.delete_secret("K")  # deleting a missing name is not an error
    store.set_secret("K", TOKEN)
    store.set_secret("K_AT", "at|2099-01-01T00:00:00Z")
    assert store.get_secret("K") == TOKEN
    store.set_secret("K", NEWER)
    assert store.get_secret("K") == NEWER
    assert make().get_secret("K") == NEWER  # another "host" sees it
    store.delete_secret("K")
    assert store.get_secret("K") is None
    assert store.get_secret("K_AT") == "at|2099-01-01T00:00:00Z"
    assert store.writable


def test_values_are_encrypted_at_rest(make: Callable[..., Store]) -> None:
    store = make()
    store.set_secret("K", TOKEN)
    raw = raw_values(store)
    assert len(raw) == 1
    assert TOKEN not in raw[0]
    assert raw[0].startswith("fernet:")


def test_plaintext_only_when_allowed(make: Callable[..., Store]) -> None:
    with pytest.raises(ConfigError) as caught:
        make(encryption_key=None)
    assert "allow_plaintext" in caught.value.hint
    store = make(encryption_key=None, allow_plaintext=True)
    store.set_secret("K", TOKEN)
    assert raw_values(store) == ["plain:" + TOKEN]
    assert "PLAINTEXT" in repr(store)


def test_a_value_no_key_opens_is_an_error_never_a_miss(make: Callable[..., Store]) -> None:
    old = generate_key()
    make(encryption_key=old).set_secret("K", TOKEN)
    with pytest.raises(SecretsError) as caught:
        make(encryption_key=generate_key()).get_secret("K")
    assert "no encryption key opens" in str(caught.value)
    rotated = make(encryption_key=[generate_key(), old])  # rotation: old keys still open
    assert rotated.get_secret("K") == TOKEN


def test_compare_and_set_and_delete(make: Callable[..., Store]) -> None:
    store = make()
    assert store.compare_and_set("K", None, TOKEN)
    assert not store.compare_and_set("K", None, NEWER)  # something is stored now
    assert not store.compare_and_set("K", "rt-older-one-xxxxxxxxxxxxxxxxxxxxxx", NEWER)
    assert store.get_secret("K") == TOKEN
    assert store.compare_and_set("K", TOKEN, NEWER)
    assert store.get_secret("K") == NEWER
    assert store.compare_and_set("K", TOKEN, NEWER)  # already holds it: a retried call
    assert not store.compare_and_delete("K", TOKEN)  # never deletes a newer token
    assert store.get_secret("K") == NEWER
    assert store.compare_and_delete("K", NEWER)
    assert store.get_secret("K") is None
    assert store.compare_and_delete("K", NEWER)  # already gone


def test_compare_and_set_race_has_one_winner(make: Callable[..., Store]) -> None:
    """16 "hosts" that all read the same token write their own rotation: one wins, and
    the stored token is the winner's (no lost update, no older token put back)."""
    make().set_secret("K", TOKEN)
    hosts = [make() for _ in range(16)]
    barrier = threading.Barrier(len(hosts))
    won: list[str] = []

    def host(i: int, store: Store) -> None:
        mine = f"rt-host-{i:02d}-" + "z" * 30
        barrier.wait()
        if store.compare_and_set("K", TOKEN, mine):
            won.append(mine)

    threads = [threading.Thread(target=host, args=(i, s)) for i, s in enumerate(hosts)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1
    assert make().get_secret("K") == won[0]


def test_the_lease_excludes_other_hosts_and_runs_out(make: Callable[..., Store]) -> None:
    a, b = make(lock_lease=1.5), make(lock_lease=1.5)
    with a.lock("K", timeout=5):
        started = time.monotonic()
        with pytest.raises(LockTimeoutError) as caught:
            with b.lock("K", timeout=0.3):
                pass
        assert f"process {os.getpid()} on" in str(caught.value)
        assert b.lease_holder("K") is not None
    with b.lock("K", timeout=0.5):  # released: taken at once
        pass
    assert b.lease_holder("K") is None
    # A holder that never releases (dies) blocks others only until its lease runs out.
    a.try_lease("K", "dead-host:1:x", 1.5)
    started = time.monotonic()
    with b.lock("K", timeout=10):
        waited = time.monotonic() - started
    assert 1.0 < waited < 1.5 + 1.0, waited


def test_release_deletes_only_its_own_lease(make: Callable[..., Store]) -> None:
    a, b = make(lock_lease=0.5), make(lock_lease=30)
    with a.lock("K", timeout=5):
        time.sleep(0.8)  # our lease ran out...
        assert b.try_lease("K", "other-host:2:y", 30) is None  # ...and another host took it
    assert b.lease_holder("K") == "process 2 on other-host"  # our release left it alone
    b.release_lease("K", "other-host:2:y")
    assert b.lease_holder("K") is None


def test_server_down_is_a_secrets_error_with_a_hint(make: Callable[..., Store]) -> None:
    store = make()
    url = (("redis://127.0.0.1:%d/0" if isinstance(store, RedisSecrets)
            else "postgresql://postgres@127.0.0.1:%d/postgres") % _closed_port())
    down = make(url=url, timeout=1)
    for call in (lambda: down.get_secret("K"), lambda: down.set_secret("K", TOKEN),
                 lambda: down.delete_secret("K"),
                 lambda: down.compare_and_set("K", None, TOKEN)):
        started = time.monotonic()
        with pytest.raises(SecretsError) as caught:
            call()
        assert time.monotonic() - started < 5
        assert "running and reachable" in caught.value.hint
        assert "session is kept" in caught.value.hint
    with pytest.raises(SecretsError):
        with down.lock("K", timeout=1):
            pass


def test_credentials_never_appear_in_messages_or_repr(make: Callable[..., Store]) -> None:
    password = "hunter2-" + uuid.uuid4().hex
    LEDGER.secret(password, "server password")
    probe = make()
    if isinstance(probe, RedisSecrets):
        url = f"redis://user:{password}@127.0.0.1:{_closed_port()}/0"
    else:
        url = f"postgresql://postgres:{password}@127.0.0.1:{_closed_port()}/postgres"
    store = make(url=url, timeout=1)
    assert password not in repr(store)
    with pytest.raises(SecretsError) as caught:
        store.get_secret("K")
    assert password not in str(caught.value)
    assert password not in repr(caught.value)


def test_next_call_works_after_a_dropped_connection(make: Callable[..., Store]) -> None:
    store = make()
    store.set_secret("K", TOKEN)
    _drop_connections(store)
    assert store.get_secret("K") == TOKEN  # reconnects once, transparently
    assert store.compare_and_set("K", TOKEN, NEWER)
    assert store.get_secret("K") == NEWER


def test_a_hung_or_slow_server_times_out_with_a_hint(
    make: Callable[..., Store], request: pytest.FixtureRequest
) -> None:
    store = make(timeout=0.5)
    store.set_secret("K", TOKEN)
    if isinstance(store, RedisSecrets):
        server: RedisServer = request.getfixturevalue("redis_server")
        assert server.proc is not None
        group = os.getpgid(server.proc.process.pid)
        os.killpg(group, signal.SIGSTOP)  # the server hangs
        try:
            with pytest.raises(SecretsError) as caught:
                store.get_secret("K")
        finally:
            os.killpg(group, signal.SIGCONT)
        assert "did not answer within 0.5 s" in caught.value.hint
    else:
        import psycopg

        pg_url = store_url[id(store)]
        with psycopg.connect(pg_url) as blocker, blocker.transaction():
            blocker.execute(psycopg.sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(
                psycopg.sql.Identifier(store.table)))
            with pytest.raises(SecretsError) as caught:
                store.get_secret("K")
        assert "took more than 0.5 s" in caught.value.hint
    assert store.get_secret("K") == TOKEN  # and the next call works


def test_postgres_creates_its_tables_when_missing(postgres_server: PostgresServer) -> None:
    import psycopg

    table = "fresh_" + uuid.uuid4().hex[:8]
    store = PostgresSecrets(postgres_server.dsn, table=f"public.{table}", encryption_key=KEY)
    assert store.get_secret("K") is None
    store.set_secret("K", TOKEN)
    with psycopg.connect(postgres_server.dsn) as conn:
        names = {r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE tablename LIKE %s", (table + "%",))}
    assert names == {table, table + "_leases"}
    store.close()
    with pytest.raises(ConfigError):
        PostgresSecrets(postgres_server.dsn, table="x; DROP TABLE y", encryption_key=KEY)


def _closed_port() -> int:
    from tests.support.servers import free_port

    return free_port()


def _drop_connections(store: Store) -> None:
    """Kill the server side of every client connection but the killer's own."""
    url = store_url[id(store)]
    if isinstance(store, RedisSecrets):
        import redis

        client = redis.Redis.from_url(url)
        try:
            me = client.client_id()
            for info in client.client_list():
                if int(info["id"]) != me:
                    client.client_kill_filter(_id=int(info["id"]))
        finally:
            client.close()
        return
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                     " WHERE application_name = 'oauth-auth' AND pid <> pg_backend_pid()")


def test_a_lease_renews_only_while_it_is_its_holders(make: Callable[..., Store]) -> None:
    a, b = make(lock_lease=0.6), make(lock_lease=30)
    with a.lock("K", timeout=5) as lease:
        time.sleep(0.4)
        assert lease.renew()  # still ours: 0.6 s from now
        time.sleep(0.4)  # past the first expiry, within the renewed one
        assert b.try_lease("K", "other-host:2:y", 30) is not None  # still held by a
        time.sleep(0.5)  # the renewed lease ran out too...
        assert b.try_lease("K", "other-host:2:y", 30) is None  # ...another host took it
        assert not lease.renew()  # and a never extends it
    assert b.lease_holder("K") == "process 2 on other-host"
    b.release_lease("K", "other-host:2:y")
