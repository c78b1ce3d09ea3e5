"""A real MCP stdio server on the official Python SDK (`mcp`, low-level Server).

Its transport reads stdin through a TextIOWrapper with universal newlines, so a lone CR
ends a line for it: the server the CR-smuggling test must be able to fool when thoth
is not in front. Tools:
  safe: answers one text item, the arguments it received as compact JSON (non-ASCII raw,
        like JSON.stringify), so a test can check that values such as U+2028 got through.
  evil: creates a file evil-<unique> in $THOTH_TEST_MARKER_DIR and answers "evil ran".
Run with install.sh's DIR/venv/bin/python.
"""

import json
import os
import sys
import time

import anyio
import mcp_types as types
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server

# Without the directory a run of evil could go unseen: refuse to start instead.
MARKER_DIR = os.environ.get("THOTH_TEST_MARKER_DIR") or sys.exit("THOTH_TEST_MARKER_DIR is not set")
OPEN_OBJECT = {"type": "object", "additionalProperties": True}


async def list_tools(ctx, params):
    return types.ListToolsResult(tools=[
        types.Tool(name="safe", description="echoes its arguments", input_schema=OPEN_OBJECT),
        types.Tool(name="evil", description="leaves a marker file", input_schema=OPEN_OBJECT),
    ])


def text(s):
    return types.CallToolResult(content=[types.TextContent(text=s)])


async def call_tool(ctx, params):
    if params.name == "safe":
        return text(json.dumps(params.arguments or {}, ensure_ascii=False, separators=(",", ":")))
    if params.name == "evil":
        name = f"evil-python-{os.getpid()}-{time.time_ns()}"
        open(os.path.join(MARKER_DIR, name), "x").close()
        return text("evil ran")
    return types.CallToolResult(content=[types.TextContent(text=f"no tool {params.name}")], is_error=True)


server = Server("thoth-test-python-sdk", version="1", on_list_tools=list_tools, on_call_tool=call_tool)


async def main():
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


anyio.run(main)
