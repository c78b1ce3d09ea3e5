"""The official Python SDK's `Client` driving a server through `thoth run`, answering
the server's questions through its callbacks, as a desktop client does: every
elicitation is accepted (form: {"ok": true}), every sampling request answered "hi".

    python_asking_client.py MODE OP... -- <server command...>

MODE is `auto` (the SDK probes server/discover and speaks 2026-07-28 when the server
does) or `legacy` (initialize). thoth's own questions (approvals in the client, their
message starting "thoth:") are answered as THOTH_TEST_APPROVAL says: `approve`
(default), `deny`, `decline`, `cancel` or `hang` (never answered); `none` declares no
elicitation capability at all. An OP is `call:TOOL[:JSON-ARGS]`, `read:URI` or
`prompt:NAME[:JSON-ARGS]`. Prints one JSON line per question that reached the client
(`asked`: the method, and the URL of a URL-mode elicitation) and one per OP: the
protocol version the session speaks and either the text of the answer or the error's
code and data. Run with install.sh's DIR/venv/bin/python.
"""

import asyncio
import json
import os
import sys

import mcp_types as types

from mcp.client.client import Client
from mcp.client.stdio import StdioServerParameters
from mcp.shared.exceptions import MCPError


def say(line):
    print(json.dumps(line), flush=True)


APPROVAL = os.environ.get("THOTH_TEST_APPROVAL", "approve")


async def on_elicit(context, params):
    url = getattr(params, "url", None)
    message = getattr(params, "message", "") or ""
    if message.startswith("thoth:"):
        say({"asked": "elicitation/create", "thoth": True, "message": message})
        if APPROVAL == "hang":
            await asyncio.sleep(3600)
        if APPROVAL in ("decline", "cancel"):
            return types.ElicitResult(action=APPROVAL)
        return types.ElicitResult(action="accept", content={"decision": APPROVAL})
    say({"asked": "elicitation/create", "url": url})
    if url is not None:
        return types.ElicitResult(action="accept")
    return types.ElicitResult(action="accept", content={"ok": True})


async def on_sample(context, params):
    say({"asked": "sampling/createMessage"})
    return types.CreateMessageResult(
        role="assistant", content=types.TextContent(type="text", text="hi"), model="test-model"
    )


def texts(items):
    return " ".join(getattr(i, "text", None) or "" for i in items).strip()


async def run(client, op):
    kind, _, rest = op.partition(":")
    if kind == "read":
        result = await client.read_resource(rest)
        return {"text": texts(result.contents)}
    name, _, args = rest.partition(":")
    args = json.loads(args) if args else {}
    if kind == "prompt":
        result = await client.get_prompt(name, args)
        return {"text": texts(m.content for m in result.messages)}
    result = await client.call_tool(name, args)
    return {"text": texts(result.content), "is_error": bool(result.is_error)}


async def main():
    args = sys.argv[1:]
    split = args.index("--")
    mode, ops, command = args[0], args[1:split], args[split + 1 :]
    # thoth gets this process's environment (the SDK passes only a safe subset by default).
    server = StdioServerParameters(command=command[0], args=command[1:], env=dict(os.environ))
    async with Client(
        server,
        mode=mode,
        elicitation_callback=None if APPROVAL == "none" else on_elicit,
        sampling_callback=on_sample,
        sampling_capabilities=types.SamplingCapability(tools=types.SamplingToolsCapability()),
    ) as client:
        version = getattr(client.session, "protocol_version", None)
        for op in ops:
            line = {"op": op, "protocol": version}
            try:
                line.update(await run(client, op))
            except MCPError as e:
                line["error_code"] = e.error.code
                line["error_data"] = e.error.data
            say(line)


if __name__ == "__main__":
    asyncio.run(main())
