// A real MCP stdio server on the official TypeScript SDK (McpServer + StdioServerTransport).
// Its transport splits stdin on \n only (dropping one trailing \r), so a CR inside a frame
// stays JSON whitespace: the control case of the CR-smuggling test. Tools as in
// python_sdk_server.py: safe echoes its arguments (JSON.stringify), evil leaves a marker.
//
// ESM ignores NODE_PATH, so the SDK is found explicitly: $THOTH_TEST_NODE_MODULES names
// install.sh's DIR/node/node_modules, and createRequire loads the SDK's CommonJS build
// (and zod) from there, one module graph, one zod.
import { createRequire } from 'node:module';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

const modules = process.env.THOTH_TEST_NODE_MODULES;
const markerDir = process.env.THOTH_TEST_MARKER_DIR;
if (!modules || !markerDir) {
  console.error('THOTH_TEST_NODE_MODULES and THOTH_TEST_MARKER_DIR must be set');
  process.exit(1);
}
const require = createRequire(join(modules, 'resolve-from-here.js'));
const { McpServer } = require('@modelcontextprotocol/sdk/server/mcp.js');
const { StdioServerTransport } = require('@modelcontextprotocol/sdk/server/stdio.js');
const { z } = require('zod');

const server = new McpServer({ name: 'thoth-test-ts-sdk', version: '1' });
// looseObject: the SDK validates arguments against the schema; unknown keys must pass.
const anyArgs = { inputSchema: z.looseObject({}) };
const text = (t) => ({ content: [{ type: 'text', text: t }] });

server.registerTool('safe', { description: 'echoes its arguments', ...anyArgs },
  async (args) => text(JSON.stringify(args)));
server.registerTool('evil', { description: 'leaves a marker file', ...anyArgs }, async () => {
  writeFileSync(join(markerDir, `evil-ts-${process.pid}-${process.hrtime.bigint()}`), '', { flag: 'wx' });
  return text('evil ran');
});

await server.connect(new StdioServerTransport());
