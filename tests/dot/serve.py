"""Run the bench's django-oauth-toolkit server on 127.0.0.1 until stdin closes.

    python -m tests.dot.serve '<json settings>'

It binds a free port first (so the issuer is known before Django starts), generates a
fresh RSA key for ID tokens, creates the SQLite schema in the given directory, seeds the
users and applications, then prints one JSON line {"ready": true, ...} on stdout with the
issuer, the client ids and secrets, and the time each step took. It serves with Django's
threaded WSGI server and exits when its stdin reaches EOF, so it never outlives the test
process that started it (tests/support/dot.py).

Settings (all optional): directory (for the database; default a new temporary one),
access_token_ttl, id_token_ttl, refresh_token_ttl, rotate_refresh_token, device_interval,
offline_access (False: no offline_access scope), root_metadata (also serve RFC 8414's
path-inserted metadata at the root), localhost_port (the port of the registered
http://localhost:<port>/callback).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import threading
import time
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

PUBLIC_CLIENT_ID = "dot-native"
CONFIDENTIAL_CLIENT_ID = "dot-confidential"
SERVICE_CLIENT_ID = "dot-service"
DEVICE_CLIENT_ID = "dot-device"
HS256_CLIENT_ID = "dot-hs256"
USERS = (("alice", "alice-password", "alice@example.test", "Alice", "Liddell"),
         ("bob", "bob-password", "bob@example.test", "Bob", "Builder"))


def _rsa_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")


def _seed(bench: dict[str, Any]) -> dict[str, Any]:
    """Users and applications; returns what the test side needs to know about them."""
    from django.contrib.auth import get_user_model
    from oauth2_provider.models import get_application_model

    user_model = get_user_model()
    for username, password, email, first, last in USERS:
        user_model.objects.create_user(username, email, password, first_name=first,
                                       last_name=last)
    app = get_application_model()
    loopback = " ".join([
        "http://127.0.0.1/callback",  # RFC 8252 section 7.3: any port
        "http://[::1]/callback",
        f"http://localhost:{bench['localhost_port']}/callback",  # exact port
    ])
    secrets = {
        CONFIDENTIAL_CLIENT_ID: os.urandom(24).hex(),
        SERVICE_CLIENT_ID: os.urandom(24).hex(),
        HS256_CLIENT_ID: os.urandom(24).hex(),
    }
    common = {"algorithm": app.RS256_ALGORITHM, "skip_authorization": False}
    app.objects.create(name="Native app", client_id=PUBLIC_CLIENT_ID,
                       client_type=app.CLIENT_PUBLIC, redirect_uris=loopback,
                       authorization_grant_type=app.GRANT_AUTHORIZATION_CODE, **common)
    # DOT hashes the secret on save, so it is known only here.
    app.objects.create(name="Confidential app", client_id=CONFIDENTIAL_CLIENT_ID,
                       client_secret=secrets[CONFIDENTIAL_CLIENT_ID],
                       client_type=app.CLIENT_CONFIDENTIAL, redirect_uris=loopback,
                       authorization_grant_type=app.GRANT_AUTHORIZATION_CODE, **common)
    # ID tokens signed HS256 with the client secret, which DOT then keeps in clear.
    app.objects.create(name="HS256 app", client_id=HS256_CLIENT_ID,
                       client_secret=secrets[HS256_CLIENT_ID], hash_client_secret=False,
                       client_type=app.CLIENT_CONFIDENTIAL, redirect_uris=loopback,
                       authorization_grant_type=app.GRANT_AUTHORIZATION_CODE,
                       algorithm=app.HS256_ALGORITHM, skip_authorization=False)
    app.objects.create(name="Service", client_id=SERVICE_CLIENT_ID,
                       client_secret=secrets[SERVICE_CLIENT_ID],
                       client_type=app.CLIENT_CONFIDENTIAL, redirect_uris="",
                       authorization_grant_type=app.GRANT_CLIENT_CREDENTIALS, **common)
    app.objects.create(name="Device app", client_id=DEVICE_CLIENT_ID,
                       client_type=app.CLIENT_PUBLIC, redirect_uris="",
                       authorization_grant_type=app.GRANT_DEVICE_CODE, **common)
    return {
        "client_id": PUBLIC_CLIENT_ID,
        "confidential_client_id": CONFIDENTIAL_CLIENT_ID,
        "confidential_client_secret": secrets[CONFIDENTIAL_CLIENT_ID],
        "service_client_id": SERVICE_CLIENT_ID,
        "service_client_secret": secrets[SERVICE_CLIENT_ID],
        "device_client_id": DEVICE_CLIENT_ID,
        "hs256_client_id": HS256_CLIENT_ID,
        "hs256_client_secret": secrets[HS256_CLIENT_ID],
        "users": {u[0]: u[1] for u in USERS},
    }


def main() -> int:
    started = time.monotonic()
    bench: dict[str, Any] = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    timings: dict[str, float] = {}

    def lap(name: str, since: float) -> float:
        now = time.monotonic()
        timings[name] = round(now - since, 3)
        return now

    from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler

    server = ThreadedWSGIServer(("127.0.0.1", 0), WSGIRequestHandler, allow_reuse_address=False)
    port = server.server_address[1]
    directory = bench.get("directory") or tempfile.mkdtemp(prefix="dot-bench-")
    bench.setdefault("localhost_port", port)
    bench.update(
        issuer=f"http://127.0.0.1:{port}/o",
        database=os.path.join(directory, "db.sqlite3"),
        rsa_private_key=_rsa_pem(),
        django_secret_key=os.urandom(32).hex(),
    )
    t = lap("bind_and_key", started)
    os.environ["DOT_BENCH"] = json.dumps(bench)
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.dot.settings"
    import django
    from django.core.management import call_command

    django.setup()
    t = lap("django_setup", t)
    # No migration files are run: the schema is created straight from the models, which
    # is several times faster (MIGRATION_MODULES maps every app to None).
    call_command("migrate", run_syncdb=True, verbosity=0, interactive=False)
    t = lap("schema", t)
    seeded = _seed(bench)
    t = lap("seed", t)
    from django.core.wsgi import get_wsgi_application

    server.set_app(get_wsgi_application())
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                              daemon=True)
    thread.start()
    lap("total", started)
    ready = {
        "ready": True,
        "issuer": bench["issuer"],
        "origin": f"http://127.0.0.1:{port}",
        "port": port,
        "localhost_port": bench["localhost_port"],
        "pid": os.getpid(),
        "directory": directory,
        "timings": timings,
        "versions": _versions(),
        **seeded,
    }
    print(json.dumps(ready), flush=True)
    try:
        while sys.stdin.buffer.read(65536):
            pass
    except KeyboardInterrupt:
        pass
    server.shutdown()
    server.server_close()
    return 0


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    return {name: version(name) for name in ("django", "django-oauth-toolkit", "oauthlib")}


if __name__ == "__main__":
    sys.exit(main())
