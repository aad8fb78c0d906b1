#!/usr/bin/env node
// Checklist run by a Node `ws` client against an echo server.
//
//   node client_check.mjs [--deflate] ws://127.0.0.1:PORT/
//
// The server must behave like echo_server.mjs (subprotocols "chat"/"superchat", echo,
// and `close <CODE> <REASON>`). Prints `PASS <name>` or `FAIL <name>: <reason>` per
// check and a final `N passed, M failed`; exits 0 only when every check passed. Each
// check is bounded by 10 s, the whole run by 60 s. permessage-deflate is off unless
// --deflate: then every check compresses every message (threshold 0), and deflate-params
// checks each parameter of RFC 7692 (see DEFLATE_VARIANTS).

import { randomBytes } from 'node:crypto';
import WebSocket from 'ws';

const CHECK_TIMEOUT_MS = 10_000;
const TOTAL_TIMEOUT_MS = 60_000;
const MAX_MESSAGE = 16 * 1024 * 1024;
const DEFLATE_FLAG = '--deflate';
const deflate = process.argv.includes(DEFLATE_FLAG);
const PER_MESSAGE_DEFLATE = deflate ? { threshold: 0 } : false;

class CheckFailed extends Error {}

function expect(condition, message) {
  if (!condition) throw new CheckFailed(message);
}

function short(value, limit = 60) {
  const text = Buffer.isBuffer(value) ? `<${value.length} bytes>` : String(JSON.stringify(value));
  return text.length <= limit ? text : `${text.slice(0, limit)}... (${value?.length} long)`;
}

// One client connection: queues messages and remembers the close event, so that
// nothing that arrives between two awaits is lost.
class Peer {
  constructor(ws) {
    this.ws = ws;
    this.messages = [];
    this.waiters = [];
    this.closeInfo = null;
    this.closeWaiters = [];
    this.upgradeHeaders = null;
    ws.on('upgrade', (res) => {
      this.upgradeHeaders = res.headers;
    });
    ws.on('message', (data, isBinary) => {
      const waiter = this.waiters.shift();
      if (waiter) waiter.resolve({ data, isBinary });
      else this.messages.push({ data, isBinary });
    });
    ws.on('close', (code, reason) => {
      this.closeInfo = { code, reason: reason.toString('utf8') };
      for (const waiter of this.waiters.splice(0)) {
        waiter.reject(new CheckFailed(`connection closed (${code}${this.closeInfo.reason ? ` ${this.closeInfo.reason}` : ""}) while waiting for a message`));
      }
      for (const resolve of this.closeWaiters.splice(0)) resolve(this.closeInfo);
    });
    ws.on('error', () => {}); // reported through open() or the close code
  }

  next() {
    if (this.messages.length) return Promise.resolve(this.messages.shift());
    if (this.closeInfo) {
      return Promise.reject(new CheckFailed(`connection closed (${this.closeInfo.code}) while waiting for a message`));
    }
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  closed() {
    if (this.closeInfo) return Promise.resolve(this.closeInfo);
    return new Promise((resolve) => this.closeWaiters.push(resolve));
  }
}

// Every socket a check opened, so a timed-out or failed check leaves nothing behind.
let openedSockets = [];

function open(url, protocols = [], perMessageDeflate = PER_MESSAGE_DEFLATE) {
  const ws = new WebSocket(url, protocols, { perMessageDeflate, maxPayload: MAX_MESSAGE });
  openedSockets.push(ws);
  const peer = new Peer(ws);
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve(peer));
    ws.once('error', (err) => {
      err.peer = peer;
      reject(err);
    });
  });
}

async function echoOne(peer, message) {
  const binary = Buffer.isBuffer(message);
  peer.ws.send(message, { binary });
  const reply = await peer.next();
  expect(reply.isBinary === binary, `sent ${binary ? 'binary' : 'text'}, got ${reply.isBinary ? 'binary' : 'text'}`);
  const got = binary ? reply.data : reply.data.toString('utf8');
  const same = binary ? Buffer.compare(got, message) === 0 : got === message;
  expect(same, `sent ${short(message)}, got ${short(got)}`);
}

async function closeNormally(peer) {
  peer.ws.close(1000);
  await peer.closed();
}

const checks = [
  ['subprotocol-chosen', async (url) => {
    const peer = await open(url, ['chat']);
    expect(peer.ws.protocol === 'chat', `negotiated ${JSON.stringify(peer.ws.protocol)}, expected "chat"`);
    await closeNormally(peer);
  }],

  ['subprotocol-none', async (url) => {
    // ws, like browsers, fails the connection when it offered subprotocols and the
    // server picked none ("Server sent no subprotocol"). So: the server must answer
    // 101 without a Sec-WebSocket-Protocol header (or, with a ws that accepts that,
    // open with protocol ""), and a connection without subprotocols must echo.
    let peer;
    try {
      peer = await open(url, ['x-unknown']);
      expect(peer.ws.protocol === '', `negotiated ${JSON.stringify(peer.ws.protocol)}, expected none`);
    } catch (err) {
      if (err instanceof CheckFailed) throw err;
      const headers = err.peer?.upgradeHeaders;
      expect(headers, `handshake failed before a 101 response: ${err.message}`);
      expect(headers['sec-websocket-protocol'] === undefined,
        `server picked ${JSON.stringify(headers['sec-websocket-protocol'])}, expected none`);
      expect(err.message === 'Server sent no subprotocol', `unexpected handshake error: ${err.message}`);
      console.log('  note: subprotocol-none: server answered 101 without a subprotocol; ws refuses that by design, so the echo is checked on a connection offering none');
      peer = await open(url, []);
      expect(peer.ws.protocol === '', `negotiated ${JSON.stringify(peer.ws.protocol)} without an offer`);
    }
    await echoOne(peer, 'ok');
    await closeNormally(peer);
  }],

  ['utf8-multibyte', async (url) => {
    const peer = await open(url);
    await echoOne(peer, 'κόσμε 🎉 hello ✓');
    await closeNormally(peer);
  }],

  ['empty-text', async (url) => {
    const peer = await open(url);
    await echoOne(peer, '');
    await closeNormally(peer);
  }],

  ['empty-binary', async (url) => {
    const peer = await open(url);
    await echoOne(peer, Buffer.alloc(0));
    await closeNormally(peer);
  }],

  ['binary-1mib', async (url) => {
    const peer = await open(url);
    await echoOne(peer, randomBytes(1024 * 1024));
    await closeNormally(peer);
  }],

  ['burst-100', async (url) => {
    const peer = await open(url);
    const sent = Array.from({ length: 100 }, (_, i) => `msg-${i}`);
    for (const message of sent) peer.ws.send(message);
    for (let i = 0; i < sent.length; i++) {
      const reply = await peer.next();
      const text = reply.data.toString('utf8');
      expect(!reply.isBinary && text === sent[i], `echo #${i} was ${short(text)}, expected ${sent[i]}`);
    }
    await closeNormally(peer);
  }],

  ['client-close', async (url) => {
    const peer = await open(url);
    await echoOne(peer, 'before close');
    peer.ws.close(4000, 'client bye');
    // ws reports the code of the close frame it *received*, 1006 if none came.
    const { code } = await peer.closed();
    expect(code !== 1006, 'no close frame came back from the server (1006)');
    expect(code === 4000, `server answered with code ${code}, expected 4000`);
    expect(peer.ws.readyState === WebSocket.CLOSED, `readyState ${peer.ws.readyState} after close`);
  }],

  ['server-close', async (url) => {
    const peer = await open(url);
    peer.ws.send('close 4001 server bye');
    const { code, reason } = await peer.closed();
    expect(code !== 1006, 'connection dropped without a close frame (1006)');
    expect(code === 4001, `close code ${code}, expected 4001`);
    expect(reason === 'server bye', `close reason ${JSON.stringify(reason)}, expected "server bye"`);
    expect(peer.messages.length === 0, `got a message instead of a close: ${short(peer.messages[0]?.data)}`);
  }],
];

// Client offers for deflate-params: each RFC 7692 parameter alone, then all of them.
const DEFLATE_VARIANTS = [
  {},
  { serverNoContextTakeover: true },
  { clientNoContextTakeover: true },
  { serverMaxWindowBits: 10 },
  { clientMaxWindowBits: 9 },
  { serverMaxWindowBits: 8, clientMaxWindowBits: 8, serverNoContextTakeover: true, clientNoContextTakeover: true },
];

const deflateChecks = [
  ['deflate-params', async (url) => {
    const text = Array.from({ length: 3000 }, (_, i) => `{"id": ${i}, "name": "item ${i % 37}", "ok": true}`).join('');
    const data = Buffer.alloc(256 * 400, 0).map((_, i) => i % 256);
    for (const variant of DEFLATE_VARIANTS) {
      const peer = await open(url, [], { threshold: 0, ...variant });
      // ws.extensions holds the names only: read the answer's parameters from the 101.
      const header = peer.upgradeHeaders?.['sec-websocket-extensions'] ?? '';
      expect(header.startsWith('permessage-deflate'), `${JSON.stringify(variant)}: not negotiated (answer ${JSON.stringify(header)})`);
      if (variant.serverNoContextTakeover) {
        expect(header.includes('server_no_context_takeover'), `${JSON.stringify(variant)}: answer ${JSON.stringify(header)}`);
      }
      if (variant.serverMaxWindowBits) {
        expect(header.includes(`server_max_window_bits=${variant.serverMaxWindowBits}`), `${JSON.stringify(variant)}: answer ${JSON.stringify(header)}`);
      }
      for (const message of [text, data, text, 'short', text.slice(0, 5000)]) await echoOne(peer, message);
      await closeNormally(peer);
    }
  }],
];

function withTimeout(promise, ms) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new CheckFailed(`timed out after ${(ms / 1000).toFixed(1)} s`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

async function main() {
  const positional = process.argv.slice(2).filter((arg) => arg !== DEFLATE_FLAG);
  const url = positional[0];
  if (!url || positional.length !== 1) {
    process.stderr.write(`usage: node client_check.mjs [${DEFLATE_FLAG}] ws://HOST:PORT/\n`);
    process.exit(2);
  }
  const deadline = Date.now() + TOTAL_TIMEOUT_MS;
  let passed = 0;
  let failed = 0;
  for (const [name, check] of deflate ? [...checks, ...deflateChecks] : checks) {
    const budget = Math.min(CHECK_TIMEOUT_MS, deadline - Date.now());
    openedSockets = [];
    try {
      if (budget <= 0) throw new CheckFailed('not run: overall 60 s budget used up');
      await withTimeout(check(url), budget);
      passed++;
      console.log(`PASS ${name}`);
    } catch (err) {
      failed++;
      const reason = err instanceof CheckFailed ? err.message : `${err.name}: ${err.message}`;
      console.log(`FAIL ${name}: ${reason}`);
    } finally {
      for (const ws of openedSockets) if (ws.readyState !== WebSocket.CLOSED) ws.terminate();
    }
  }
  console.log(`${passed} passed, ${failed} failed`);
  process.exitCode = failed === 0 ? 0 : 1;
}

main().catch((err) => {
  console.log(`FAIL internal: ${err.stack || err}`);
  console.log('0 passed, 1 failed');
  process.exit(1);
});
