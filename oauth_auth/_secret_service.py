"""The Secret Service (Linux) on one D-Bus connection and session, kept for the process.

keyring's SecretService backend opens a D-Bus connection, and a Diffie-Hellman session
with the daemon, for every call: ~9 ms per read, and every new connection is a chance to
hit a race in gnome-keyring that aborts the daemon. `SecretServiceConnection` stores the
same items keyring does (same attributes, label and collection, so either reads what the
other wrote) through secretstorage's public API, but keeps its connection and session
(~1.5 ms per read). It imports neither keyring nor anything it does not need, so a cached
`oauth-auth token` can use it without keyring's start-up cost.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = [
    "KEYRING_APPLICATION",
    "SCHEMES",
    "SECRET_SERVICE_BACKEND",
    "ItemMissing",
    "SecretServiceConnection",
]

_T = TypeVar("_T")

#: keyring's class for the Secret Service, by the dotted name its configuration uses.
SECRET_SERVICE_BACKEND = "keyring.backends.SecretService.Keyring"
#: The ``application`` attribute keyring writes on its items.
KEYRING_APPLICATION = "Python keyring library"
#: keyring's attribute schemes: (the username attribute, the service attribute).
SCHEMES = {"default": ("username", "service"), "KeePassXC": ("UserName", "Title")}

_BUS_NAME = "org.freedesktop.secrets"
_SERVICE_PATH = "/org/freedesktop/secrets"


class ItemMissing(Exception):
    """There is no item to delete (keyring's PasswordDeleteError, by another name)."""


class SecretServiceConnection:
    """keyring's SecretService items over one kept D-Bus connection and session.

    Offers the three calls `KeyringSecrets` makes of a backend (``get_password``,
    ``set_password``, ``delete_password``). A new connection first pings the daemon and
    pauses briefly, so that the daemon registers the client before its first real
    request: gnome-keyring registers a new client from an idle callback and aborts when a
    request is served before that (``gkd_secret_service_get_pkcs11_session: assertion
    'client' failed``; https://gitlab.gnome.org/GNOME/gnome-keyring/-/work_items/196, the
    mechanism traced in https://github.com/huacnlee/omamail/issues/248).

    Not thread-safe: `KeyringSecrets` calls it under its per-backend lock. A failure on a
    reused connection drops it and retries once on a new one (the daemon may have been
    restarted); every call is idempotent.
    """

    SETTLE_SECONDS = 0.005

    def __init__(self, collection_path: str | None = None, scheme: str = "default") -> None:
        """Args:
            collection_path: keyring's ``preferred_collection`` (a D-Bus path), or None
                for the default collection (created when there is none, as keyring does).
            scheme: keyring's attribute scheme, a key of `SCHEMES`.
        """
        self._collection_path = collection_path
        self._username_attr, self._service_attr = SCHEMES[scheme]
        self._conn: Any = None
        self._collection: Any = None
        self._owner: tuple[int, str | None] = (0, None)

    def close(self) -> None:
        """Close the connection, if any (the next call opens a new one)."""
        conn, self._conn, self._collection = self._conn, None, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def _query(self, service: str, username: str) -> dict[str, str]:
        return {self._username_attr: username, self._service_attr: service}

    def _connect(self) -> Any:
        import secretstorage
        from jeepney import DBusAddress, new_method_call

        owner = (os.getpid(), os.environ.get("DBUS_SESSION_BUS_ADDRESS"))
        if self._conn is not None and self._owner == owner:
            return self._conn
        self.close()  # after fork, or the session bus changed
        conn = secretstorage.dbus_init()
        try:
            peer = DBusAddress(_SERVICE_PATH, bus_name=_BUS_NAME,
                               interface="org.freedesktop.DBus.Peer")
            conn.send_and_get_reply(new_method_call(peer, "Ping"), timeout=30)
            time.sleep(self.SETTLE_SECONDS)
        except BaseException:
            conn.close()
            raise
        self._conn, self._owner = conn, owner
        return conn

    def _get_collection(self) -> Any:
        import secretstorage
        from secretstorage.exceptions import LockedException

        conn = self._connect()
        if self._collection is None:
            if self._collection_path:
                collection = secretstorage.Collection(conn, self._collection_path)
            else:
                collection = secretstorage.get_default_collection(conn)
            self._collection = collection
        if self._collection.is_locked():
            self._collection.unlock()
            if self._collection.is_locked():  # the prompt was dismissed
                raise LockedException("Failed to unlock the collection!")
        return self._collection

    def _run(self, action: Callable[[Any], _T]) -> _T:
        reused = self._conn is not None
        try:
            return action(self._get_collection())
        except Exception as exc:
            if isinstance(exc, ItemMissing) or type(exc).__name__ == "LockedException":
                raise  # answers, not a broken connection
            self.close()
            if not reused:
                raise
        return action(self._get_collection())

    def get_password(self, service: str, username: str) -> str | None:
        """The secret of the first item with these attributes, or None."""

        def action(collection: Any) -> str | None:
            from secretstorage.exceptions import LockedException

            for item in collection.search_items(self._query(service, username)):
                if item.is_locked():
                    item.unlock()
                    if item.is_locked():
                        raise LockedException("Failed to unlock the item!")
                secret = item.get_secret()
                # The session the item opened serves every later item of this connection.
                collection.session = collection.session or item.session
                return str(secret.decode("utf-8"))
            return None

        return self._run(action)

    def set_password(self, service: str, username: str, password: str) -> None:
        """Create or replace the item, with keyring's label and attributes."""
        attributes = {**self._query(service, username), "application": KEYRING_APPLICATION}
        label = f"Password for '{username}' on '{service}'"
        self._run(lambda c: c.create_item(label, attributes, password.encode("utf-8"),
                                          replace=True))

    def delete_password(self, service: str, username: str) -> None:
        """Delete the first item with these attributes; `ItemMissing` if there is none."""

        def action(collection: Any) -> None:
            for item in collection.search_items(self._query(service, username)):
                item.delete()
                return
            raise ItemMissing("No such password!")

        self._run(action)


_SERVICE_IFACE = "org.freedesktop.Secret.Service"
_ITEM_IFACE = "org.freedesktop.Secret.Item"


class NotServed(Exception):
    """The quick read cannot answer for sure (locked, absent collection, odd reply):
    the caller takes the full path, which can prompt, create or report."""


def read_once(service: str, username: str, *, collection_path: str | None = None,
              scheme: str = "default") -> str | None:
    """One read of the item `SecretServiceConnection.get_password` would return, with
    jeepney alone, for a process that makes just this one call (`oauth-auth token` on a
    cache hit).

    The same item (same attributes, the same collection: `collection_path`, else the
    ``default`` alias) from the same daemon as keyring and `SecretServiceConnection`, so
    the backend is the one the user configured; only the transfer differs. It asks the
    Secret Service for a ``plain`` session (the specification's algorithm for transport
    without encryption) instead of the Diffie-Hellman one, which needs the
    ``cryptography`` package and a key exchange: together over half of the command's own
    time. The secret travels over the user's own session-bus socket, to a process of the
    same user that could ask the daemon for it anyway; nothing is written anywhere.

    Returns None when there is no such item. Raises `NotServed` when the answer is not
    certain (a locked collection or item: the full path can prompt for the unlock), and
    any jeepney error as it is; the caller falls back on every exception.
    """
    from jeepney import DBusAddress, new_method_call
    from jeepney.io.blocking import open_dbus_connection

    username_attr, service_attr = SCHEMES[scheme]
    conn = open_dbus_connection(bus="SESSION")
    try:
        def call(path: str, iface: str, method: str, signature: str | None = None,
                 body: tuple[Any, ...] = ()) -> Any:
            address = DBusAddress(path, bus_name=_BUS_NAME, interface=iface)
            reply = conn.send_and_get_reply(new_method_call(address, method, signature, body),
                                            timeout=5)
            if reply.header.message_type.name != "method_return":
                raise NotServed(f"{method}: {reply.body!r:.80}")
            return reply.body

        # Let the daemon register this client before the first real request (see
        # `SecretServiceConnection`).
        call(_SERVICE_PATH, "org.freedesktop.DBus.Peer", "Ping")
        time.sleep(SecretServiceConnection.SETTLE_SECONDS)
        collection = collection_path
        if not collection:
            (collection,) = call(_SERVICE_PATH, _SERVICE_IFACE, "ReadAlias", "s", ("default",))
            if collection == "/":
                raise NotServed("no default collection")
        # The service-wide search says which items are locked; keep this collection's.
        unlocked, locked = call(_SERVICE_PATH, _SERVICE_IFACE, "SearchItems", "a{ss}",
                                ({username_attr: username, service_attr: service},))
        inside = collection.rstrip("/") + "/"
        if any(path.startswith(inside) for path in locked):
            raise NotServed("the item is locked")
        items = [path for path in unlocked if path.startswith(inside)]
        if not items:
            return None
        _, session = call(_SERVICE_PATH, _SERVICE_IFACE, "OpenSession", "sv",
                          ("plain", ("s", "")))
        ((_, _params, value, _content_type),) = call(items[0], _ITEM_IFACE, "GetSecret", "o",
                                                     (session,))
        return bytes(value).decode("utf-8")  # closing the connection ends the session
    finally:
        conn.close()
