"""The official Python SDK's `Client` driving a server through `thoth run`, answering
the server's questions through its callbacks, as a desktop client does: every
elicitation is accepted ({"ok": true}), every sampling request answered "hi".

    python_asking_client.py MODE TOOL... -- <server command...>

MODE is `auto` (the SDK probes server/discover and speaks 2026-07-28 when the server
does) or `legacy` (initialize). Prints one JSON line per tool called: its name, the
protocol version the session speaks, and either the result's text or the error's code
and data. Run with install.sh's DIR/venv/bin/python.
"""

import asyncio
import json
import os
import sys

import mcp_types as types

from mcp.client.client import Client
from mcp.client.stdio import StdioServerParameters
from mcp.shared.exceptions import MCPError


async def on_elicit(context, params):
    return types.ElicitResult(action="accept", content={"ok": True})


async def on_sample(context, params):
    return types.CreateMessageResult(
        role="assistant", content=types.TextContent(type="text", text="hi"), model="test-model"
    )


async def main():
    args = sys.argv[1:]
    split = args.index("--")
    mode, tools, command = args[0], args[1:split], args[split + 1 :]
    # thoth gets this process's environment (the SDK passes only a safe subset by default).
    server = StdioServerParameters(command=command[0], args=command[1:], env=dict(os.environ))
    async with Client(
        server,
        mode=mode,
        elicitation_callback=on_elicit,
        sampling_callback=on_sample,
        sampling_capabilities=types.SamplingCapability(tools=types.SamplingToolsCapability()),
    ) as client:
        session = client.session
        version = getattr(session, "protocol_version", None)
        for tool in tools:
            line = {"tool": tool, "protocol": version}
            try:
                result = await client.call_tool(tool, {})
                line["text"] = " ".join(c.text for c in result.content if getattr(c, "text", None))
                line["is_error"] = bool(result.is_error)
            except MCPError as e:
                line["error_code"] = e.error.code
                line["error_data"] = e.error.data
            print(json.dumps(line), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
