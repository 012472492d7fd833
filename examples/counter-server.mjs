// A durable single-node demo: a counter and a guest list kept in plain JS objects,
// every change a command in the Raft log under ./data. kill -9 it and start it again:
// nothing acknowledged is lost. (The full example app arrives with the object store.)
import { createServer } from 'node:http';
import { RaftNode } from '../dist/index.js';

const port = Number(process.env.PORT ?? 3000);
const state = { count: 0, guests: [] };
const encoder = new TextEncoder();
const decoder = new TextDecoder();

const fsm = {
  apply(command, { index }) {
    const cmd = JSON.parse(decoder.decode(command));
    if (cmd.op === 'increment') state.count += 1;
    else if (cmd.op === 'sign') state.guests.push({ name: String(cmd.name).slice(0, 80), index });
    else throw new Error(`unknown command ${cmd.op}`);
    return state.count;
  },
  snapshot: () => encoder.encode(JSON.stringify(state)),
  restore(data) {
    Object.assign(state, JSON.parse(decoder.decode(data)));
  },
};

const node = await RaftNode.start({
  id: 1,
  address: process.env.RAFT_ADDRESS ?? '127.0.0.1:7001',
  dataDir: process.env.DATA_DIR ?? './data',
  fsm,
});

const escape = (s) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const page = () => `<!doctype html><meta charset="utf-8"><title>prevail demo</title>
<h1>Count: ${state.count}</h1>
<form method="post" action="/increment"><button>+1</button></form>
<h2>Guest book</h2>
<form method="post" action="/sign"><input name="name" required maxlength="80"><button>Sign</button></form>
<ul>${state.guests.map((g) => `<li>${escape(g.name)} <small>(entry ${g.index})</small></li>`).join('')}</ul>
<p><small>node ${node.id}, ${node.status().role}, applied ${node.status().appliedIndex}</small></p>`;

const server = createServer(async (req, res) => {
  try {
    if (req.method === 'GET' && req.url === '/') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(page());
    } else if (req.method === 'POST' && (req.url === '/increment' || req.url === '/sign')) {
      let body = '';
      for await (const chunk of req) body += chunk;
      const name = new URLSearchParams(body).get('name') ?? '';
      const cmd = req.url === '/increment' ? { op: 'increment' } : { op: 'sign', name };
      await node.propose(encoder.encode(JSON.stringify(cmd)));
      res.writeHead(303, { location: '/' }).end();
    } else {
      res.writeHead(404).end('not found');
    }
  } catch (err) {
    res.writeHead(503, { 'content-type': 'application/json' })
      .end(JSON.stringify({ error: { code: err.code ?? 'PREVAIL_ENGINE', message: err.message } }));
  }
});
server.listen(port, '127.0.0.1', () => console.log(`prevail demo on http://127.0.0.1:${port}/ (data in ${node.dataDir})`));

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, async () => {
    server.close();
    await node.close({ transferLeadership: true });
  });
}
