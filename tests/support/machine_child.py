"""A child process for the machine tests: wait for the start signal, call token() once.

Usage: python -m tests.support.machine_child '<json>' with keys issuer, client_id, key,
store (a FileSecrets directory), go (a file whose appearance starts everyone) and grant
("client_credentials", or "exchange:<subject token file>"), and optionally lock (False:
the private switch that turns the cross-process lock off). The client secret comes from
the environment variable MACHINE_CLIENT_SECRET, never from the command line.
Prints one `TOKEN <token>` or `ERROR <type> <message>` line; exits 0, or 3 on failure.
The library logs at DEBUG to stderr, which the parent checks for secrets.
"""

from __future__ import annotations

import json
import logging
import os
import sys

from oauth_auth import (
    ClientCredentials,
    FileToken,
    OAuthAuthError,
    OAuthTokenSource,
    OIDCParams,
    TokenExchange,
)
from oauth_auth.grants import Grant
from tests.support.children import wait_for_start
from tests.support.filesecrets import FileSecrets


def main() -> int:
    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr,
                        format="%(levelname)s %(name)s %(message)s")
    cfg = json.loads(sys.argv[1])
    grant: Grant
    if cfg["grant"] == "client_credentials":
        grant = ClientCredentials()
    else:
        grant = TokenExchange(FileToken(cfg["grant"].removeprefix("exchange:")))
    source = OAuthTokenSource(
        OIDCParams(cfg["issuer"], cfg["client_id"],
                   client_secret=os.environ["MACHINE_CLIENT_SECRET"]),
        key_provider=lambda: cfg["key"],
        secrets_provider=FileSecrets(cfg["store"]),
        grant=grant,
        lock_timeout=180,  # the test bounds correctness, not the wait on a loaded machine
    )
    source._cross_process_lock = cfg.get("lock", True)  # the private test switch
    if not wait_for_start(cfg):  # its ready file, then the go file (tests.support.children)
        print("ERROR Timeout never started", flush=True)
        return 3
    try:
        print(f"TOKEN {source.token()}", flush=True)
    except OAuthAuthError as exc:
        print(f"ERROR {type(exc).__name__} {exc}", flush=True)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
