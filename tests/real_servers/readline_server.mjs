// A minimal hand-written MCP stdio server on Node's built-in readline, no SDK: the way
// many small servers are written. readline ends a line at \n, \r\n and a lone \r, so a
// CR inside a frame splits it, like Python's universal newlines. Each line is parsed on
// its own; a line that is not JSON is logged to stderr and skipped, as real servers do.
// Tools as in python_sdk_server.py: safe echoes its arguments, evil leaves a marker.
import { createInterface } from 'node:readline';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

const markerDir = process.env.THOTH_TEST_MARKER_DIR;
if (!markerDir) {
  console.error('THOTH_TEST_MARKER_DIR must be set');
  process.exit(1);
}
const send = (msg) => process.stdout.write(JSON.stringify(msg) + '\n');
const reply = (id, result) => send({ jsonrpc: '2.0', id, result });
const text = (t, isError = false) => ({ content: [{ type: 'text', text: t }], isError });
const openObject = { type: 'object', additionalProperties: true };

function callTool({ name, arguments: args = {} } = {}) {
  if (name === 'safe') return text(JSON.stringify(args));
  if (name === 'evil') {
    writeFileSync(join(markerDir, `evil-readline-${process.pid}-${process.hrtime.bigint()}`), '', { flag: 'wx' });
    return text('evil ran');
  }
  return text(`no tool ${name}`, true);
}

function handle(msg) {
  if (msg === null || typeof msg !== 'object' || Array.isArray(msg) || !('id' in msg)) return; // notifications, responses
  switch (msg.method) {
    case 'initialize':
      return reply(msg.id, {
        protocolVersion: msg.params?.protocolVersion,
        capabilities: { tools: {} },
        serverInfo: { name: 'thoth-test-readline', version: '1' },
      });
    case 'ping': return reply(msg.id, {});
    case 'tools/list':
      return reply(msg.id, { tools: ['safe', 'evil'].map((name) => ({ name, inputSchema: openObject })) });
    case 'tools/call': return reply(msg.id, callTool(msg.params));
    default:
      return send({ jsonrpc: '2.0', id: msg.id, error: { code: -32601, message: `no method ${msg.method}` } });
  }
}

// crlfDelay: Infinity makes \r\n one line end however the bytes arrive; a lone \r still ends one.
createInterface({ input: process.stdin, crlfDelay: Infinity }).on('line', (line) => {
  if (line.trim() === '') return;
  let msg;
  try {
    msg = JSON.parse(line);
  } catch (e) {
    console.error(`readline_server: skipping a line that is not JSON: ${e.message}`);
    return;
  }
  handle(msg);
});
