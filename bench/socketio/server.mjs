#!/usr/bin/env node
// A Socket.IO (v4) chat server, one node of bench/cross-node's Socket.IO stack: what
// `wsworker serve --mode chat` does, written as Socket.IO users write it.
//
//   node server.mjs 127.0.0.1:PORT [--redis redis://127.0.0.1:6379]
//
// A client picks its room with the handshake's query (`?room=NAME`, as socket.io-client's
// `query` option sends it); a "message" event (`socket.send(data)`) goes unchanged to
// everyone in the sender's room, the sender included (`io.to(room)`, not `socket.to(room)`,
// as wsworker's chat mode does), or to everyone without a room. With --redis the rooms span
// every node using that Redis, through `@socket.io/redis-adapter` (`createAdapter`, the
// classic adapter: every node PSUBSCRIBEs to all the channels of the namespace and receives
// every room's messages) on the `redis` client. Without it, rooms are this process's alone.
//
// WebSocket transport only (no HTTP long-polling, no upgrade), no permessage-deflate
// (Socket.IO's default), one thread. It prints one line on stdout once it listens and its
// Redis clients are connected, and stops on SIGTERM/SIGINT, or when its stdin ends if
// --exit-on-stdin-eof is given (so that a parent that dies does not leave it behind).

import { createServer } from 'node:http';
import { parseArgs } from 'node:util';
import { Server } from 'socket.io';
import { createAdapter } from '@socket.io/redis-adapter';
import { createClient } from 'redis';

const USAGE = 'usage: node server.mjs HOST:PORT [--redis redis://HOST:PORT] [--exit-on-stdin-eof]';

function fail(message) {
  process.stderr.write(`socketio server: ${message}\n${USAGE}\n`);
  process.exit(2);
}

let parsed;
try {
  parsed = parseArgs({
    allowPositionals: true,
    options: {
      redis: { type: 'string' },
      'exit-on-stdin-eof': { type: 'boolean', default: false },
    },
  });
} catch (error) {
  fail(error.message);
}
const { values, positionals } = parsed;
if (positionals.length !== 1) fail('one HOST:PORT is needed');
const match = /^(.+):(\d{1,5})$/.exec(positionals[0]);
if (!match || Number(match[2]) > 65535) fail(`not HOST:PORT: ${positionals[0]}`);
const [host, port] = [match[1], Number(match[2])];

const httpServer = createServer();
const io = new Server(httpServer, {
  transports: ['websocket'],
  // The load generator's messages are 32 bytes; this is Socket.IO's own default, kept
  // visible because the wsworker node's limit is far larger.
  maxHttpBufferSize: 1e6,
  serveClient: false,
});

const redisClients = [];
if (values.redis !== undefined) {
  // The adapter needs two connections: one publishes, the other is in subscriber mode.
  const pubClient = createClient({ url: values.redis });
  const subClient = pubClient.duplicate();
  for (const client of [pubClient, subClient]) {
    // Without a listener an error would end the process; the bench sees what follows
    // (missing deliveries) and the line on stderr says why.
    client.on('error', (error) => process.stderr.write(`socketio server: redis: ${error.message}\n`));
  }
  try {
    await Promise.all([pubClient.connect(), subClient.connect()]);
  } catch (error) {
    process.stderr.write(`socketio server: cannot connect to ${values.redis}: ${error.message}\n`);
    process.exit(1);
  }
  io.adapter(createAdapter(pubClient, subClient));
  redisClients.push(pubClient, subClient);
}

io.on('connection', (socket) => {
  const room = socket.handshake.query.room;
  // `?room=a&room=b` gives an array: the first, as wsworker's query_param does.
  const name = Array.isArray(room) ? room[0] : room;
  if (typeof name === 'string' && name !== '') socket.join(name);
  socket.on('message', (data) => {
    if (typeof name === 'string' && name !== '') io.to(name).emit('message', data);
    else io.emit('message', data);
  });
});

httpServer.on('error', (error) => {
  process.stderr.write(`socketio server: ${error.message}\n`);
  process.exit(1);
});
httpServer.listen(port, host, () => {
  const address = httpServer.address();
  const via = values.redis === undefined ? 'without Redis' : `over ${values.redis}`;
  process.stdout.write(`socketio chat on http://${address.address}:${address.port} ${via}\n`);
});

let stopping = false;
async function stop() {
  if (stopping) return;
  stopping = true;
  // Closing the server disconnects every client; then the Redis clients quit. A Redis that
  // does not answer must not keep the process: it goes after 2 s regardless.
  setTimeout(() => process.exit(0), 2000).unref();
  io.close();
  await Promise.allSettled(redisClients.map((client) => client.quit()));
  process.exit(0);
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
if (values['exit-on-stdin-eof']) {
  process.stdin.on('end', stop);
  process.stdin.resume();
}
