"""An MCP tool call with only the server's URL: `resource_auth(url)` as the SDK client's auth.

Run: python examples/mcp_client.py https://mcp.example.com/mcp [TOOL] [JSON-ARGUMENTS]

Needs the MCP Python SDK (`pip install 'mcp>=2.3'`, which brings httpx2). The first run
finds the server's authorization server (RFC 9728), registers a client (RFC 7591), and
opens your browser to log in; every later run, in any process, reuses the session from
the keyring and the registration from the oauth-auth config file. Without a browser,
`OAUTH_LOGIN_METHOD=device` uses the device grant where the server offers it.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

import httpx2
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client

from oauth_auth import resource_auth


async def call(url: str, tool: str, arguments: dict[str, Any], auth: Any) -> Any:
    async with httpx2.AsyncClient(auth=auth, timeout=60) as http, \
            streamable_http_client(url, http_client=http) as (read, write), \
            ClientSession(read, write) as session:
        await session.initialize()
        tools = [t.name for t in (await session.list_tools()).tools]
        print(f"tools: {', '.join(tools)}", file=sys.stderr)
        result = await session.call_tool(tool, arguments)
        return result.structured_content or [getattr(c, "text", c) for c in result.content]


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    url = argv[0]
    tool = argv[1] if len(argv) > 1 else "add"
    arguments = json.loads(argv[2]) if len(argv) > 2 else {"a": 2, "b": 3}
    auth = resource_auth(url, interactive=True,
                         login_method=os.environ.get("OAUTH_LOGIN_METHOD", "auto"))
    print(json.dumps(asyncio.run(call(url, tool, arguments, auth))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
