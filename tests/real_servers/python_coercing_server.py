"""A real MCP stdio server on the official Python SDK's high-level `MCPServer`, whose
tools take typed parameters: pydantic (lax mode) coerces what the client sends into
the declared types, so `{"armed": "true"}` runs as `armed=True` and `{"count": "500"}`
as `count=500`. The server a schema check in front of it must protect. Tool:
  launch(armed: bool = False, count: int = 0): creates launch-armed-<unique> in
         $THOTH_TEST_MARKER_DIR when armed, launch-500-<unique> when count == 500, and
         answers what it received. $THOTH_TEST_LAUNCH_DESCRIPTION, when set, is its
         description instead of its docstring (a changed definition, for pinning).
  wipe(): creates launch-wipe-<unique> (a tool a policy hides).
Resources res://evil/{tag} (creates launch-resource-<unique> when read) and res://ok/{tag};
prompt admin(reason) (creates launch-prompt-<unique> when rendered).
Run with install.sh's DIR/venv/bin/python.
"""

import os
import sys
import time

from mcp.server.mcpserver import MCPServer

MARKER_DIR = os.environ.get("THOTH_TEST_MARKER_DIR") or sys.exit("THOTH_TEST_MARKER_DIR is not set")

app = MCPServer("thoth-test-coercing")


def mark(kind):
    open(os.path.join(MARKER_DIR, f"launch-{kind}-{os.getpid()}-{time.time_ns()}"), "x").close()


@app.tool(description=os.environ.get("THOTH_TEST_LAUNCH_DESCRIPTION") or None)
def launch(armed: bool = False, count: int = 0) -> str:
    """Launches when armed."""
    if armed:
        mark("armed")
    if count == 500:
        mark("500")
    return f"armed={armed!r} count={count!r}"


@app.tool()
def wipe() -> str:
    """Wipes everything."""
    mark("wipe")
    return "wiped"


@app.resource("res://evil/{tag}")
def evil_resource(tag: str) -> str:
    """Runs code when read (a resource template)."""
    mark("resource")
    return f"evil {tag}"


@app.resource("res://ok/{tag}")
def ok_resource(tag: str) -> str:
    """Reads harmlessly."""
    return f"ok {tag}"


@app.prompt()
def admin(reason: str) -> str:
    """A prompt whose rendering runs code."""
    mark("prompt")
    return f"admin because {reason}"


app.run("stdio")
