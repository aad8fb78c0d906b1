#!/usr/bin/env node
// Echo server on Node `ws`: a real peer for wsworker's client tests.
//
//   node echo_server.mjs [--port N] [--ignore-stdin] [--deflate]
//
// Listens on 127.0.0.1 (port 0 = any free port), prints `LISTENING <port>` on a line
// of its own, then serves until SIGTERM/SIGINT or until its stdin reaches EOF (so a
// test that dies does not leave it behind; `--ignore-stdin` to run it by hand with
// stdin closed).
//
// Per connection:
// - subprotocol: the first one the client offers that is in ["chat", "superchat"],
//   otherwise none (the handshake is never refused over subprotocols);
// - every message is echoed as it came (text as text, binary as binary);
// - except a text message `close <CODE> <REASON...>`: the server closes with that
//   code and reason instead (a code it may not send gives close 1008);
// - messages up to 16 MiB, permessage-deflate off (--deflate: on, every message
//   compressed: threshold 0, the other settings ws's defaults).

import { WebSocketServer } from 'ws';

const SUPPORTED_SUBPROTOCOLS = ['chat', 'superchat'];
const MAX_MESSAGE = 16 * 1024 * 1024;
const CLOSE_COMMAND = /^close (\d{1,5})(?: ([\s\S]*))?$/;

function parseArgs(argv) {
  const args = { port: 0, ignoreStdin: false, deflate: false };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--port' && i + 1 < argv.length) args.port = Number(argv[++i]);
    else if (argv[i].startsWith('--port=')) args.port = Number(argv[i].slice(7));
    else if (argv[i] === '--ignore-stdin') args.ignoreStdin = true;
    else if (argv[i] === '--deflate') args.deflate = true;
    else {
      process.stderr.write(`usage: node echo_server.mjs [--port N] [--ignore-stdin] [--deflate]\n`);
      process.exit(2);
    }
  }
  if (!Number.isInteger(args.port) || args.port < 0 || args.port > 65535) {
    process.stderr.write(`invalid port\n`);
    process.exit(2);
  }
  return args;
}

const args = parseArgs(process.argv.slice(2));

const wss = new WebSocketServer({
  host: '127.0.0.1',
  port: args.port,
  perMessageDeflate: args.deflate ? { threshold: 0 } : false,
  maxPayload: MAX_MESSAGE,
  // Called only when the client offers subprotocols; `false` means "none".
  handleProtocols: (offered) => {
    for (const protocol of offered) {
      if (SUPPORTED_SUBPROTOCOLS.includes(protocol)) return protocol;
    }
    return false;
  },
});

wss.on('connection', (ws) => {
  ws.on('error', (err) => process.stderr.write(`connection error: ${err.message}\n`));
  ws.on('message', (data, isBinary) => {
    if (!isBinary) {
      const command = CLOSE_COMMAND.exec(data.toString('utf8'));
      if (command) {
        try {
          ws.close(Number(command[1]), command[2] ?? '');
        } catch {
          ws.close(1008, 'invalid close command'); // a code ws may not send, or a reason > 123 bytes
        }
        return;
      }
    }
    ws.send(data, { binary: isBinary });
  });
});

wss.on('error', (err) => {
  process.stderr.write(`server error: ${err.message}\n`);
  process.exit(1);
});

wss.on('listening', () => {
  process.stdout.write(`LISTENING ${wss.address().port}\n`);
});

let stopping = false;
function stop(why) {
  if (stopping) return;
  stopping = true;
  process.stderr.write(`stopping (${why})\n`);
  wss.close(); // stop accepting
  for (const ws of wss.clients) ws.close(1001, 'going away');
  const done = () => process.exit(0);
  // Wait for the close handshakes, bounded.
  const timer = setTimeout(() => {
    for (const ws of wss.clients) ws.terminate();
    done();
  }, 2000);
  timer.unref();
  const poll = setInterval(() => {
    if (wss.clients.size === 0) done();
  }, 20);
  poll.unref();
}

process.on('SIGTERM', () => stop('SIGTERM'));
process.on('SIGINT', () => stop('SIGINT'));

if (!args.ignoreStdin) {
  process.stdin.on('data', () => {});
  process.stdin.on('end', () => stop('stdin EOF'));
  process.stdin.on('error', () => stop('stdin error'));
  process.stdin.resume();
}
