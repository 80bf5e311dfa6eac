"""The MCP Python SDK's server, with its authorization routes, on loopback (RFC 9728 tests).

`mcp_server` (a fixture, one server per test) runs `python -m tests.support.mcp_app` on a
free 127.0.0.1 port under `ServerProcess`'s guard, so it never outlives the test run.
`MCPServer.stats()` reads what its authorization server did (registrations,
authorizations, code exchanges, refreshes, invalid_grant answers, revocations, and the
`resource` of each request); `MCPServer.restart()` starts it again on its port, having
forgotten every client it registered. `play_browser` is the user: it follows an authorization URL
(the SDK's provider approves at once) to the loopback callback, in a thread, as a browser
tab would. `call_add` makes a real MCP tool call through the SDK's own streamable-HTTP
client with an `httpx2.AsyncClient(auth=...)`.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.require import missing
from tests.support.servers import ServerProcess, free_port, wait_until

__all__ = ["MCPServer", "call_add", "mcp_server", "mcp_step_up_server", "play_browser"]


@dataclass
class MCPServer:
    """One running MCP server: its resource URL, issuer, and counters."""

    port: int
    stats_file: Path
    process: ServerProcess

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The MCP endpoint: the protected resource."""
        return f"http://127.0.0.1:{self.port}/mcp"

    def stats(self) -> dict[str, Any]:
        return dict(json.loads(self.stats_file.read_text()))

    def restart(self) -> None:
        """Stop the server and start it again on the same port, with the default
        settings: it keeps its clients, codes and tokens in memory, so it forgets them
        all (the counters start at 0 too)."""
        self.process.stop()
        self.process = start_mcp(self.stats_file.parent, port=self.port).process


def start_mcp(directory: Path, access_ttl: int = 3600, *, step_up: bool = False,
              port: int | None = None) -> MCPServer:
    if importlib.util.find_spec("mcp") is None:
        missing("the MCP Python SDK", "pip install 'mcp>=2.3' (the dev dependency group)")
    import os

    import httpx

    port = port or free_port()
    stats = directory / "mcp-stats.json"
    env = dict(os.environ, MCP_ACCESS_TTL=str(access_ttl))
    if step_up:
        env["MCP_STEP_UP"] = "1"  # `admin_add` needs mcp:admin: the step-up challenge
    process = ServerProcess([sys.executable, "-m", "tests.support.mcp_app", str(port),
                             str(stats)], log=directory / "mcp.log", env=env)

    def ready() -> bool:
        if not process.alive():
            raise RuntimeError("the MCP server exited:\n" + process.tail())
        return httpx.get(f"http://127.0.0.1:{port}/mcp", timeout=2).status_code == 401

    try:
        wait_until(ready, 60, "the MCP server")
    except BaseException:
        process.stop()
        raise
    return MCPServer(port, stats, process)


@pytest.fixture
def mcp_server(tmp_path: Path) -> Iterator[MCPServer]:
    server = start_mcp(tmp_path)
    try:
        yield server
    finally:
        server.process.stop()


@pytest.fixture
def mcp_step_up_server(tmp_path: Path) -> Iterator[MCPServer]:
    """An MCP server whose `admin_add` tool needs `mcp:admin` too (a step-up)."""
    server = start_mcp(tmp_path, step_up=True)
    try:
        yield server
    finally:
        server.process.stop()


def play_browser(url: str) -> None:
    """The user's browser tab: follow the authorization URL to the loopback callback."""
    import httpx

    def visit() -> None:
        httpx.get(url, follow_redirects=True, timeout=30)

    threading.Thread(target=visit, daemon=True).start()


def call_add(url: str, auth: Any, a: int = 2, b: int = 3, *, tool: str = "add") -> int:
    """One MCP tool call (`add`, or `tool`) through the SDK's client, authorized by `auth`."""
    import httpx2
    from mcp.client.session import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    async def go() -> int:
        async with httpx2.AsyncClient(auth=auth, timeout=30) as http, \
                streamable_http_client(url, http_client=http) as (read, write), \
                ClientSession(read, write) as session:
            await session.initialize()
            result = await session.call_tool(tool, {"a": a, "b": b})
            if result.is_error:
                raise RuntimeError(f"the tool call failed: {result.content}")
            return int(result.structured_content["result"]) if result.structured_content \
                else int(result.content[0].text)  # type: ignore[union-attr]

    return asyncio.run(go())
