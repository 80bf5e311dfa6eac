"""A child process of the MCP tests: `resource_auth(url)` from the config file, one tool call.

Usage: python -m tests.support.mcp_child '<json>' with keys url, store (a FileSecrets
directory), ready and go (tests.support.children.start_together's barrier). Prints `SUM <n>` or
`ERROR <type> <message>`; exits 0, or 3 on failure. Not interactive: a process that would
need a login fails instead, which is what the tests check.
"""

from __future__ import annotations

import json
import logging
import sys

from oauth_auth import OAuthAuthError, resource_auth
from tests.support.children import wait_for_start
from tests.support.filesecrets import FileSecrets
from tests.support.mcp import call_add


def main() -> int:
    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr,
                        format="%(levelname)s %(name)s %(message)s")
    cfg = json.loads(sys.argv[1])
    auth = resource_auth(cfg["url"], interactive=False,
                         secrets_provider=FileSecrets(cfg["store"]), lock_timeout=120)
    if not wait_for_start(cfg):  # its ready file, then the go file (tests.support.children)
        print("ERROR Timeout never started", flush=True)
        return 3
    try:
        print(f"SUM {call_add(cfg['url'], auth, 20, 22)}", flush=True)
    except OAuthAuthError as exc:
        print(f"ERROR {type(exc).__name__} {exc}", flush=True)
        return 3
    except BaseException as exc:  # the SDK wraps errors in exception groups
        print(f"ERROR {type(exc).__name__} {exc!r}", flush=True)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
