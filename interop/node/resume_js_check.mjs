#!/usr/bin/env node
// web/resume.js (ResumingWebSocket) frame by frame, without a browser: the script runs as
// the page runs it (a classic script, in this context) over a scripted stand-in for the
// browser's WebSocket and sessionStorage, and the test plays the server. What
// resume_check.mjs cannot make a real server do is played here: duplicates, a new epoch,
// binary frames, bad frames, a failed topic, every close code, a full send queue, and a
// server without resume that the browser refuses when the subprotocol is offered.
//
//   node resume_js_check.mjs      (node:test; exits non-zero on any failure; no packages)

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import test from 'node:test';
import { runInThisContext } from 'node:vm';

const PROTOCOL = 'wsworker.resume.v1';
const ID = (n) => n.toString(16).padStart(16, '0');

// --- the browser, as far as resume.js uses it --------------------------------------------
globalThis.CloseEvent ??= class CloseEvent extends Event {
  constructor(type, init = {}) {
    super(type);
    Object.assign(this, { code: init.code, reason: init.reason, wasClean: init.wasClean });
  }
};
const storage = new Map();
globalThis.sessionStorage = {
  getItem: (key) => (storage.has(key) ? storage.get(key) : null),
  setItem: (key, value) => storage.set(key, String(value)),
  removeItem: (key) => storage.delete(key),
};

/** A WebSocket the test drives: `accept(protocol)`, `frame(data)`, `drop(code)`. */
class FakeSocket {
  static made = [];
  static waiting = [];
  constructor(url, protocols) {
    Object.assign(this, { url, protocols: [].concat(protocols), sent: [], readyState: 0, protocol: '', extensions: '' });
    FakeSocket.made.push(this);
    for (const wake of FakeSocket.waiting.splice(0)) wake();
  }
  send(data) {
    assert.equal(this.readyState, 1, 'sent on a socket that is not open');
    this.sent.push(data);
  }
  close(code = 1005, reason = '') {
    if (this.readyState > 1) return;
    this.readyState = 2;
    setTimeout(() => this.drop(code, reason, true));
  }
  /** The handshake succeeds; the server agrees to `protocol` (or to none). */
  accept(protocol) {
    this.readyState = 1;
    this.protocol = protocol;
    this.onopen?.(new Event('open'));
  }
  /** The handshake fails, as a browser fails one whose answer agrees to no offered subprotocol. */
  refuse() {
    this.onerror?.(new Event('error'));
    this.drop(1006, '', false);
  }
  frame(data) {
    this.onmessage?.({ data });
  }
  drop(code, reason = '', wasClean = false) {
    this.readyState = 3;
    this.onclose?.({ code, reason, wasClean });
  }
}
FakeSocket.CONNECTING = 0;
FakeSocket.OPEN = 1;
globalThis.WebSocket = FakeSocket;

runInThisContext(readFileSync(new URL('../../web/resume.js', import.meta.url), 'utf8'), { filename: 'resume.js' });
const { ResumingWebSocket } = globalThis;

/** The next socket made after `count` were (waits for the reconnect's timer). */
async function socketAfter(count) {
  while (FakeSocket.made.length <= count) await new Promise((wake) => FakeSocket.waiting.push(wake));
  return FakeSocket.made[count];
}

/** A helper under test, recording everything it tells the page. */
function open(urls, options = { minDelay: 1, maxDelay: 4 }) {
  const made = FakeSocket.made.length;
  const ws = new ResumingWebSocket(urls, options);
  const events = [];
  const messages = [];
  for (const type of ['open', 'close', 'error', 'reconnecting', 'resumed']) {
    ws.addEventListener(type, (e) => events.push(e.detail ? [type, e.detail] : e.code ? [type, e.code, e.wasClean] : [type]));
  }
  ws.onmessage = (e) => messages.push(e.data);
  return { ws, events, messages, socket: FakeSocket.made[made], made };
}

const hello = (token, positions) => `hello\n${JSON.stringify({ session: 's', token, window: 120, positions })}`;
const closed = (ws) => new Promise((resolve) => ws.addEventListener('close', resolve, { once: true }));

test('start, hello, dedupe per topic and epoch, binary, and a resume on the next URL', async () => {
  const urls = ['ws://a/?room=r ü', 'ws://b/?room=r ü'];
  const { ws, events, messages, socket } = open(urls);
  assert.deepEqual(socket.protocols, [PROTOCOL]);
  assert.equal(ws.readyState, ResumingWebSocket.CONNECTING);
  ws.send('early'); // queued until the server's answer
  socket.accept(PROTOCOL);
  assert.deepEqual(socket.sent, ['start\n'], 'the first frame');
  assert.equal(ws.readyState, ws.CONNECTING, 'open only once the server answered');

  socket.frame(hello('t1', { all: ['7', 3, ID(3)], 'g:r ü': ['7', 5, ID(5)] }));
  assert.equal(ws.readyState, ws.OPEN);
  assert.deepEqual(events, [['open']]);
  assert.deepEqual(socket.sent, ['start\n', 'early'], 'the queue after the answer');

  socket.frame(`m g:r%20%C3%BC 5 ${ID(5)}\nseen at hello`); // at the position: a duplicate
  socket.frame(`m g:r%20%C3%BC 6 ${ID(6)}\nsix\nlines kept`);
  socket.frame(`m g:r%20%C3%BC 6 ${ID(6)}\nsix again`);
  socket.frame(`m all 4 ${ID(4)}\nfour`);
  socket.frame(`m g:r%20%C3%BC 2 ${ID(9)} 8\nnew epoch`); // a lower offset, but a new epoch
  socket.frame(`m g:r%20%C3%BC 2 ${ID(9)}\nnew epoch again`);
  socket.frame('v\nplain, no place');
  assert.deepEqual(messages, ['six\nlines kept', 'four', 'new epoch', 'plain, no place']);

  // Binary frames: the payload after the head, as binaryType says.
  const bytes = (head, payload) => new Uint8Array([...new TextEncoder().encode(head), ...payload]).buffer;
  socket.frame(bytes(`m all 5 ${ID(5)}\n`, [1, 10, 3]));
  ws.binaryType = 'arraybuffer';
  socket.frame(bytes(`m all 6 ${ID(6)}\n`, [4, 5]));
  socket.frame(bytes(`m all 6 ${ID(6)}\n`, [4, 5]));
  assert.ok(messages[4] instanceof Blob && messages[4].size === 3, 'a Blob by default');
  assert.deepEqual([...new Uint8Array(await messages[4].arrayBuffer())], [1, 10, 3]);
  assert.deepEqual([...new Uint8Array(messages[5])], [4, 5]);
  assert.equal(messages.length, 6);

  socket.frame(`joined\n${JSON.stringify({ topic: 'u:tom', position: ['7', 1, ID(1)] })}`);
  socket.frame(`joined\n${JSON.stringify({ topic: 'all', position: ['7', 2, ID(2)] })}`); // behind: kept
  const session = JSON.parse(storage.get(`wsworker.resume ${urls.join(' ')}`));
  assert.deepEqual(session, {
    token: 't1',
    positions: { all: ['7', 6, ID(6)], 'g:r ü': ['8', 2, ID(9)], 'u:tom': ['7', 1, ID(1)] },
  });

  // Lost: the next URL, the session resumed, what was sent meanwhile after the answer.
  socket.drop(1006);
  assert.equal(ws.readyState, ws.CONNECTING);
  assert.deepEqual(events.at(-1)[0], 'reconnecting');
  assert.deepEqual(events.at(-1)[1].url, urls[1]);
  ws.send('while away');
  const second = await socketAfter(FakeSocket.made.indexOf(socket) + 1);
  assert.equal(second.url, urls[1]);
  assert.equal(ws.url, urls[1]);
  second.accept(PROTOCOL);
  assert.deepEqual(second.sent, [`resume\n${JSON.stringify(session)}`]);
  const resumed = { session: 's', token: 't2', window: 120, recovered: ['g:r ü', 'u:tom'], failed: [['all', 'expired']], positions: { all: ['9', 0, ID(0)] } };
  second.frame(`resumed\n${JSON.stringify(resumed)}`);
  assert.deepEqual(events.slice(-2), [['open'], ['resumed', { session: 's', recovered: ['g:r ü', 'u:tom'], failed: [['all', 'expired']] }]]);
  assert.deepEqual(second.sent.slice(1), ['while away']);
  second.frame(`m g:r%20%C3%BC 2 ${ID(9)}\nreplayed twice`); // the replay overlaps: dropped
  second.frame(`m g:r%20%C3%BC 3 ${ID(10)}\nreplayed`);
  second.frame(`m all 1 ${ID(1)}\nafter the failure`);
  assert.deepEqual(messages.slice(6), ['replayed', 'after the failure']);
  second.frame(`left\n${JSON.stringify({ topic: 'u:tom' })}`);
  assert.deepEqual(JSON.parse(storage.get(`wsworker.resume ${urls.join(' ')}`)), {
    token: 't2',
    positions: { all: ['9', 1, ID(1)], 'g:r ü': ['8', 3, ID(10)] },
  });

  // A reload (a new object on the same URLs) resumes the stored session.
  const reload = open(urls);
  reload.socket.accept(PROTOCOL);
  assert.match(reload.socket.sent[0], /^resume\n\{"token":"t2",/);
  reload.ws.close();

  // Bad frames are dropped, the connection goes on.
  const warn = console.warn;
  console.warn = () => {};
  for (const bad of ['no head', 'm all x 0000000000000001\nz', `m all 9 ${ID(9)} e\nz`, `m %zz 9 ${ID(9)}\nz`, 'hello\n{', 'what\n{}']) second.frame(bad);
  console.warn = warn;
  second.frame(`m all 2 ${ID(2)}\nstill here`);
  assert.equal(messages.at(-1), 'still here');
  assert.equal(ws.readyState, ws.OPEN);

  // The server ends with 1000: no reconnect, the session forgotten.
  const end = closed(ws);
  second.drop(1000, 'bye', true);
  await end;
  assert.equal(ws.readyState, ws.CLOSED);
  assert.deepEqual(events.at(-1), ['close', 1000, true]);
  assert.equal(storage.has(`wsworker.resume ${urls.join(' ')}`), false);
});

test('codes 1001, 1011, 1012, 1013 reconnect; others end', async () => {
  for (const code of [1001, 1011, 1012, 1013]) {
    const { ws, socket } = open([`ws://c/${code}`]);
    socket.accept(PROTOCOL);
    socket.frame(hello('t', {}));
    socket.drop(code);
    const next = await socketAfter(FakeSocket.made.indexOf(socket) + 1);
    assert.equal(next.url, `ws://c/${code}`, `${code}: round robin over one URL`);
    ws.close();
  }
  for (const code of [1002, 1003, 1008, 1009, 4000]) {
    const { ws, events, socket } = open([`ws://c/${code}`, 'ws://d/']);
    socket.accept(PROTOCOL);
    socket.drop(code);
    assert.equal(ws.readyState, ws.CLOSED, `${code}`);
    assert.deepEqual(events.at(-1), ['close', code, false]);
  }
});

test('a server without resume: refused with the offer, plain without it', async () => {
  const { ws, events, messages, socket } = open(['ws://plain/', 'ws://other/']);
  ws.send('queued');
  socket.refuse();
  const plain = await socketAfter(FakeSocket.made.indexOf(socket) + 1);
  assert.equal(plain.url, 'ws://plain/', 'the same URL, at once');
  assert.deepEqual(plain.protocols, []);
  assert.deepEqual(events, [], 'the refusal is not the page\'s business');
  plain.accept('');
  assert.equal(ws.readyState, ws.OPEN);
  assert.deepEqual(plain.sent, ['queued'], 'no first frame, the queue');
  plain.frame(`m all 1 ${ID(1)}\nno heads here`);
  assert.deepEqual(messages, [`m all 1 ${ID(1)}\nno heads here`]);
  ws.close(1000, 'bye');
  await closed(ws);
  assert.deepEqual(events, [['open'], ['close', 1000, true]]);

  // After a session, a refused attempt is a node down, not a plain server.
  const resuming = open(['ws://r1/', 'ws://r2/']);
  resuming.socket.accept(PROTOCOL);
  resuming.socket.frame(hello('t', {}));
  resuming.socket.drop(1006);
  const next = await socketAfter(FakeSocket.made.indexOf(resuming.socket) + 1);
  next.refuse();
  const after = await socketAfter(FakeSocket.made.indexOf(next) + 1);
  assert.deepEqual([after.url, after.protocols], ['ws://r1/', [PROTOCOL]]);
  resuming.ws.close();
});

test('the send queue is bounded; close while reconnecting ends at once', async () => {
  const { ws, events, socket } = open(['ws://q/'], { minDelay: 60_000, maxQueue: 2 });
  ws.send('1');
  ws.send('2');
  assert.throws(() => ws.send('3'), { name: 'QuotaExceededError' });
  socket.accept(PROTOCOL);
  socket.frame(hello('t', {}));
  socket.drop(1006);
  assert.equal(events.at(-1)[0], 'reconnecting');
  const made = FakeSocket.made.length;
  ws.close(4001, 'done');
  assert.equal(ws.readyState, ws.CLOSING);
  await closed(ws);
  assert.deepEqual(events.at(-1), ['close', 4001, true]);
  assert.equal(FakeSocket.made.length, made, 'no reconnect after close');
  ws.send('dropped silently, as WebSocket does');
});
