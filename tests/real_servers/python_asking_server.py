"""A real MCP stdio server on the official Python SDK's `MCPServer` whose tools ask the
client before they run, through the SDK's resolvers: it elicits a confirmation, samples
the client's model, and samples it with a tool the model may call. Under 2026-07-28 the
SDK asks inside an `input_required` result and runs the tool when the client retries
with the answers; under older revisions it sends the client a request of its own
mid-call. Each tool creates ran-<tool>-<unique> in $THOTH_TEST_MARKER_DIR when its body
runs, so a test can tell whether a refused question kept it from running. `note` asks
nothing: it is what thoth's own approval questions stand in front of.
Run with install.sh's DIR/venv/bin/python.
"""

import os
import sys
import time
from typing import Annotated

import mcp_types as types
from pydantic import BaseModel

from mcp.server.mcpserver import Elicit, MCPServer, Resolve, Sample

MARKER_DIR = os.environ.get("THOTH_TEST_MARKER_DIR") or sys.exit("THOTH_TEST_MARKER_DIR is not set")

app = MCPServer("thoth-test-asking")


def mark(kind):
    open(os.path.join(MARKER_DIR, f"ran-{kind}-{os.getpid()}-{time.time_ns()}"), "x").close()


class Confirmation(BaseModel):
    ok: bool


def ask_confirmation() -> Elicit[Confirmation]:
    return Elicit("Deploy to production?", Confirmation)


def hello() -> list[types.SamplingMessage]:
    return [types.SamplingMessage(role="user", content=types.TextContent(type="text", text="say hi"))]


def ask_model() -> Sample:
    return Sample(hello(), max_tokens=16)


def ask_model_with_tools() -> Sample:
    shell = types.Tool(name="shell", description="Runs a command", input_schema={"type": "object"})
    return Sample(hello(), max_tokens=16, tools=[shell])


@app.tool()
def deploy(confirmation: Annotated[Confirmation, Resolve(ask_confirmation)]) -> str:
    """Deploys once the user confirms."""
    mark("deploy")
    return f"deployed ok={confirmation.ok}"


@app.tool()
def summarize(answer: Annotated[types.CreateMessageResult, Resolve(ask_model)]) -> str:
    """Asks the client's model."""
    mark("summarize")
    return f"model said {answer.content.text}"


@app.tool()
def agent(answer: Annotated[types.CreateMessageResultWithTools, Resolve(ask_model_with_tools)]) -> str:
    """Asks the client's model, which may call a shell the server then runs."""
    mark("agent")
    return "agent done"


@app.tool()
def note(text: str) -> str:
    """Writes a note (asks nothing itself)."""
    mark("note")
    return f"noted {text}"


if __name__ == "__main__":
    app.run()
