#!/usr/bin/env node
// The Socket.IO twin of `wsworker bench --fanout`: fan-out through Socket.IO chat servers
// (server.mjs), every delivery checked for order, on socket.io-client.
//
//   node load.mjs URL [--node URL]... [--conns N] [--size BYTES] [--rate MSGS_PER_S]
//                 [--duration SECS] [--room NAME] [--json]
//
// URL is a Socket.IO server (http://HOST:PORT; ws:// works too). --conns subscribers
// (default 100) open in --room (default bench, sent as the handshake's `room` query),
// spread round-robin over URL and every --node URL (subscriber i on the (i mod n)-th);
// then one publisher joins the room on URL, sends sync messages until every connection has
// one (at most 5 s), and sends --rate (default 100) messages per second for --duration
// (default 10) seconds, each a "message" event of --size (default 20, at least 20) ASCII
// characters: the sequence number in 8 hex digits, the send time in 12 (nanoseconds since
// the run's epoch, modulo 2^48, on this process's monotonic clock), then padding. Every
// subscriber checks each message (the padding, the order: gaps, duplicates, reorders) and
// records its latency; the publisher checks its own copies but they are not deliveries.
// After publishing, connections wait at most 2 s for what is still missing (each missing
// message is an error), then disconnect. The publisher runs on a worker thread of its own:
// Node runs one event loop per thread, and the subscribers' backlog, when the servers send
// faster than this process reads, would otherwise hold the publisher's timers back and
// lower the load it offers. The message format, the phases, the bounds and
// the report are those of `wsworker bench --fanout` (crates/cli/src/bench/fanout.rs), so
// that the two stacks are measured alike.
//
// --json prints one JSON object with the field names of `wsworker bench --fanout --json`
// (latency_us has p90 too). Exit status: 0 when every subscriber opened and every
// delivery came in order without any error, 1 otherwise, 2 for bad arguments.

import { createHistogram } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { io } from 'socket.io-client';

const USAGE =
  'usage: node load.mjs URL [--node URL]... [--conns N] [--size BYTES] [--rate MSGS_PER_S] ' +
  '[--duration SECS] [--room NAME] [--json]';
// The bytes of a message's head: sequence number and send time, in hex.
const HEAD_LEN = 20;
// Send times are kept modulo 2^48 ns (78 hours).
const TIME_MODULUS = 2 ** 48;
// The sequence number of a sync message (never a published one's).
const SYNC_SEQ = 0xffffffff;
const SYNC_INTERVAL_MS = 20;
const SYNC_TIMEOUT_MS = 5000;
// After publishing, how long connections wait for the messages still missing.
const DRAIN_TIMEOUT_MS = 2000;
// A connection and its handshake must be done within this.
const CONNECT_TIMEOUT_MS = 10000;
// Handshakes in progress at once (as wsworker bench).
const MAX_CONCURRENT_HANDSHAKES = 64;
const MAX_RATE = 1e6;
const MAX_CONNS = 100000;
const ERROR_KINDS = ['connect', 'handshake', 'protocol', 'mismatch', 'timeout', 'gap', 'duplicate', 'reorder', 'missing'];

function usage(message) {
  process.stderr.write(`socketio load: ${message}\n${USAGE}\n`);
  process.exit(2);
}

// The arguments, checked as wsworker bench checks its own.
function parse() {
  let parsed;
  try {
    parsed = parseArgs({
      allowPositionals: true,
      options: {
        node: { type: 'string', multiple: true, default: [] },
        conns: { type: 'string', default: '100' },
        size: { type: 'string', default: '20' },
        rate: { type: 'string', default: '100' },
        duration: { type: 'string', default: '10' },
        room: { type: 'string', default: 'bench' },
        json: { type: 'boolean', default: false },
      },
    });
  } catch (error) {
    usage(error.message);
  }
  const { values, positionals } = parsed;
  if (positionals.length !== 1) usage('one URL is needed (more nodes with --node URL)');
  const urls = [positionals[0], ...values.node];
  for (const url of urls) {
    let parsedUrl;
    try {
      parsedUrl = new URL(url);
    } catch {
      usage(`not a URL: ${url}`);
    }
    if (!['http:', 'ws:'].includes(parsedUrl.protocol)) usage(`not an http:// or ws:// URL: ${url}`);
  }
  const integer = (name, min, max) => {
    const value = Number(values[name]);
    if (!Number.isInteger(value) || value < min || value > max) usage(`--${name} must be an integer in ${min}..=${max}`);
    return value;
  };
  const positive = (name) => {
    const value = Number(values[name]);
    if (!Number.isFinite(value) || value <= 0) usage(`--${name} must be a number above 0`);
    return value;
  };
  const plan = {
    urls,
    conns: integer('conns', 1, MAX_CONNS),
    size: integer('size', HEAD_LEN, 64 << 20),
    rate: positive('rate'),
    duration: positive('duration'),
    room: values.room,
    json: values.json,
  };
  if (plan.room === '') usage('--room must not be empty');
  if (plan.rate > MAX_RATE) usage(`--rate ${MAX_RATE} at most`);
  plan.limit = Math.ceil(plan.rate * plan.duration);
  if (plan.limit > 0xffffffff) usage('--rate × --duration is more messages than a run can number (2^32)');
  return plan;
}

// Nanoseconds on the monotonic clock since the run's epoch, as a Number (exact below 2^53
// ns: 104 days). The clock is the machine's (CLOCK_MONOTONIC), the epoch the main
// thread's, handed to the publisher's thread: send and receive times compare.
const epoch = isMainThread ? process.hrtime.bigint() : workerData.epoch;
const now = () => Number(process.hrtime.bigint() - epoch);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Counts and the first sample of each error kind.
class Errors {
  constructor() {
    this.counts = Object.fromEntries(ERROR_KINDS.map((kind) => [kind, 0]));
    this.samples = {};
  }

  add(kind, conn, count, detail) {
    this.counts[kind] += count;
    this.samples[kind] ??= `connection ${conn}: ${detail}`;
  }

  // Adds another thread's counts and samples (as `counts` and `samples` came).
  merge({ counts, samples }) {
    for (const kind of ERROR_KINDS) {
      this.counts[kind] += counts[kind];
      if (samples[kind] !== undefined) this.samples[kind] ??= samples[kind];
    }
  }

  total() {
    return Object.values(this.counts).reduce((a, b) => a + b, 0);
  }
}

// What every connection of the run shares.
class Run {
  // The run of `plan`; `padding` is the main thread's, given to the publisher's thread.
  constructor(plan, padding = undefined) {
    this.plan = plan;
    if (padding === undefined) {
      // The padding every message carries after its head (as wsworker's text payloads).
      const letters = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ';
      padding = '';
      for (let i = HEAD_LEN; i < plan.size; i++) padding += letters[Math.floor(Math.random() * letters.length)];
    }
    this.padding = padding;
    // Called once per connection when its first sync message comes.
    this.onSynced = () => {
      this.synced += 1;
    };
    this.errors = new Errors();
    // Latencies in ns; 1 ns to 1 hour, 3 significant digits.
    this.latency = createHistogram({ lowest: 1, highest: 3.6e12, figures: 3 });
    this.deliveries = 0;
    this.synced = 0;
    this.lastDeliveryNs = 0;
    // Set once publishing ended: the message count every connection waits for, and until
    // when (ns).
    this.published = null;
    this.drainDeadlineNs = null;
    this.nodes = plan.urls.map((url) => ({ url, subscribers: 0, deliveries: 0 }));
  }

  // Message `seq`, sent at `timeNs`.
  message(seq, timeNs) {
    const head = seq.toString(16).padStart(8, '0') + (timeNs % TIME_MODULUS).toString(16).padStart(12, '0');
    return head + this.padding;
  }
}

// One connection: a subscriber, or the publisher (`publisher` true).
class Peer {
  constructor(run, index, node, publisher) {
    this.run = run;
    this.index = index;
    this.node = node;
    this.publisher = publisher;
    this.next = 0;
    this.synced = false;
    this.closing = false;
    this.socket = null;
    // Resolved when every published message came (or at once if the run ends first).
    this.complete = new Promise((resolve) => {
      this.resolveComplete = resolve;
    });
  }

  // Connects (socket.io-client: the WebSocket, Engine.IO's open packet and the namespace's
  // CONNECT), bounded by CONNECT_TIMEOUT_MS. Resolves true when open, false on failure
  // (counted).
  open() {
    const { run } = this;
    return new Promise((resolve) => {
      const socket = io(run.nodes[this.node].url, {
        transports: ['websocket'],
        forceNew: true,
        reconnection: false,
        timeout: CONNECT_TIMEOUT_MS,
        query: { room: run.plan.room },
      });
      this.socket = socket;
      let settled = false;
      socket.on('connect', () => {
        settled = true;
        resolve(true);
      });
      socket.on('connect_error', (error) => {
        if (settled) return;
        settled = true;
        // socket.io-client does not tell a refused TCP connection from a refused upgrade.
        run.errors.add('connect', this.index, 1, `connect to ${run.nodes[this.node].url}: ${error.message}`);
        socket.close();
        resolve(false);
      });
      socket.on('disconnect', (reason) => {
        if (this.closing) return;
        run.errors.add('protocol', this.index, 1, `the connection ended: ${reason}`);
        this.closing = true;
        this.resolveComplete();
      });
      socket.on('message', (data) => this.receive(data));
    });
  }

  // Checks one message: its form, then its order; a subscriber's is a delivery.
  receive(data) {
    if (this.closing) return;
    const { run } = this;
    const receivedNs = now();
    // A message that comes after the wait for the missing ones ended is not a delivery,
    // however late the drain's timer fires (an overloaded event loop runs timers late).
    if (run.drainDeadlineNs !== null && receivedNs > run.drainDeadlineNs) return;
    if (typeof data !== 'string' || data.length !== run.plan.size || !data.endsWith(run.padding)) {
      const shown = typeof data === 'string' ? JSON.stringify(data.slice(0, 64)) : typeof data;
      run.errors.add('mismatch', this.index, 1, `not a fan-out message of ${run.plan.size} characters: ${shown}`);
      return;
    }
    const head = data.slice(0, HEAD_LEN);
    if (!/^[0-9a-f]{20}$/.test(head)) {
      run.errors.add('mismatch', this.index, 1, `not a fan-out message: ${JSON.stringify(head)}`);
      return;
    }
    const seq = parseInt(head.slice(0, 8), 16);
    if (seq === SYNC_SEQ) {
      if (!this.synced) {
        this.synced = true;
        run.onSynced();
      }
      return;
    }
    this.checkOrder(seq);
    if (!this.publisher) {
      const sentNs = parseInt(head.slice(8), 16);
      const latency = (((receivedNs % TIME_MODULUS) - sentNs) % TIME_MODULUS + TIME_MODULUS) % TIME_MODULUS;
      run.latency.record(Math.max(1, Math.min(latency, 3.6e12)));
      run.deliveries += 1;
      run.nodes[this.node].deliveries += 1;
      if (receivedNs > run.lastDeliveryNs) run.lastDeliveryNs = receivedNs;
    }
    if (run.published !== null && this.next >= run.published) this.resolveComplete();
  }

  // Counts what is wrong with `seq` coming now, and moves `next` on (as wsworker bench).
  checkOrder(seq) {
    const { errors } = this.run;
    if (seq === this.next) {
      this.next += 1;
    } else if (seq > this.next) {
      errors.add('gap', this.index, seq - this.next, `message ${seq} came while ${this.next} was expected`);
      this.next = seq + 1;
    } else if (seq + 1 === this.next) {
      errors.add('duplicate', this.index, 1, `message ${seq} came twice`);
    } else {
      errors.add('reorder', this.index, 1, `message ${seq} came after message ${this.next - 1}`);
    }
  }

  // Publishing has ended with `count` messages: done already?
  publishedAll(count) {
    if (this.closing || this.next >= count) this.resolveComplete();
  }

  close() {
    this.closing = true;
    this.socket?.disconnect();
  }
}

// Opens every subscriber, at most MAX_CONCURRENT_HANDSHAKES at a time.
async function openSubscribers(run) {
  const { plan } = run;
  const peers = [];
  let nextIndex = 0;
  const opened = [];
  const worker = async () => {
    while (nextIndex < plan.conns) {
      const index = nextIndex++;
      const peer = new Peer(run, index, index % plan.urls.length, false);
      peers.push(peer);
      if (await peer.open()) {
        opened.push(peer);
        run.nodes[peer.node].subscribers += 1;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(MAX_CONCURRENT_HANDSHAKES, plan.conns) }, worker));
  return { peers, opened };
}

// `rate` messages per second for `duration` seconds (at most `limit`): message n is due at
// at + n / rate; every message due is sent at each wake-up, so that a late timer does not
// lower the count. Returns the count sent.
async function publish(run, publisher, atNs) {
  const { rate, duration, limit } = run.plan;
  const stopNs = atNs + duration * 1e9;
  const dueNs = (n) => atNs + (n / rate) * 1e9;
  let sent = 0;
  while (sent < limit && dueNs(sent) < stopNs) {
    const t = now();
    while (sent < limit && dueNs(sent) <= t && dueNs(sent) < stopNs) {
      publisher.socket.send(run.message(sent, t));
      sent += 1;
    }
    if (sent >= limit || dueNs(sent) >= stopNs) break;
    await sleep(Math.max(0, (dueNs(sent) - now()) / 1e6));
  }
  return sent;
}

// The messages of `port` (the other thread), one at a time, in order: `await inbox.next()`.
class Inbox {
  constructor(port) {
    this.queue = [];
    this.waiting = null;
    port.on('message', (message) => this.push(message));
  }

  push(message) {
    if (this.waiting) {
      const resolve = this.waiting;
      this.waiting = null;
      resolve(message);
    } else {
      this.queue.push(message);
    }
  }

  // The next message, or `fallback` after `ms` milliseconds.
  next(ms = Infinity, fallback = null) {
    if (this.queue.length > 0) return Promise.resolve(this.queue.shift());
    return new Promise((resolve) => {
      const timer = Number.isFinite(ms) ? setTimeout(() => {
        this.waiting = null;
        resolve(fallback);
      }, ms) : null;
      this.waiting = (message) => {
        if (timer !== null) clearTimeout(timer);
        resolve(message);
      };
    });
  }
}

// Waits for `peers` to have every published message, until `deadlineNs`; counts the
// messages still missing then.
async function drain(run, peers, deadlineNs) {
  for (const peer of peers) peer.publishedAll(run.published);
  let timer;
  const drained = await Promise.race([
    Promise.all(peers.map((peer) => peer.complete)).then(() => true),
    new Promise((resolve) => {
      timer = setTimeout(() => resolve(false), Math.max(0, (deadlineNs - now()) / 1e6));
    }),
  ]);
  clearTimeout(timer);
  if (drained) return;
  for (const peer of peers) {
    if (!peer.closing && peer.next < run.published) {
      const missing = run.published - peer.next;
      run.errors.add(
        'missing',
        peer.index,
        missing,
        `${missing} of ${run.published} messages had not come ${DRAIN_TIMEOUT_MS / 1000} s after the last was sent`,
      );
    }
  }
}

// The publisher's thread: opens the publisher, sends sync messages until told to start,
// publishes, checks its own copies, and reports each step to the main thread:
// {open, ok}, {synced} (its own first sync message came back), {published, count, atNs,
// endNs}, {done, errors}.
async function publisherThread() {
  const { plan, padding } = workerData;
  const run = new Run(plan, padding);
  run.onSynced = () => parentPort.postMessage({ type: 'synced' });
  const inbox = new Inbox(parentPort);
  const publisher = new Peer(run, plan.conns, 0, true);
  const finish = () => {
    publisher.close();
    parentPort.postMessage({ type: 'done', errors: { counts: run.errors.counts, samples: run.errors.samples } });
  };
  const ok = await publisher.open();
  parentPort.postMessage({ type: 'open', ok });
  if (!ok || (await inbox.next()).type !== 'sync') return finish();
  // Sync messages until the main thread says every connection has one (or gives up).
  for (;;) {
    publisher.socket.send(run.message(SYNC_SEQ, now()));
    const order = await inbox.next(SYNC_INTERVAL_MS);
    if (order?.type === 'start') break;
    if (order?.type === 'stop') return finish();
  }
  const atNs = now();
  run.published = await publish(run, publisher, atNs);
  const endNs = now();
  run.drainDeadlineNs = endNs + DRAIN_TIMEOUT_MS * 1e6;
  parentPort.postMessage({ type: 'published', count: run.published, atNs, endNs });
  await drain(run, [publisher], run.drainDeadlineNs);
  finish();
}

async function main() {
  const plan = parse();
  const run = new Run(plan);
  // A bug or a stuck server must not keep the run: connecting, syncing, publishing,
  // draining and closing all have bounds; this is the bound of the whole.
  const hardLimitMs = CONNECT_TIMEOUT_MS * Math.ceil(plan.conns / MAX_CONCURRENT_HANDSHAKES + 2) +
    SYNC_TIMEOUT_MS + plan.duration * 1000 + DRAIN_TIMEOUT_MS + 10000;
  setTimeout(() => {
    process.stderr.write(`socketio load: the run did not end within ${Math.round(hardLimitMs / 1000)} s\n`);
    process.exit(1);
  }, hardLimitMs).unref();

  const connectBegan = now();
  const { peers, opened } = await openSubscribers(run);
  const connectS = (now() - connectBegan) / 1e9;
  const report = { subscribers: opened.length, connectS, published: 0, windowS: 0, spanS: 0, cpuNs: null };
  if (opened.length > 0) {
    const worker = new Worker(new URL(import.meta.url), { workerData: { plan, padding: run.padding, epoch } });
    const inbox = new Inbox(worker);
    worker.on('error', (error) => {
      run.errors.add('protocol', plan.conns, 1, `(the publisher's thread) ${error.message}`);
      inbox.push({ type: 'done', errors: null });
    });
    const opening = await inbox.next();
    if (opening.type === 'open' && opening.ok) {
      await publishThrough(run, worker, inbox, opened, report);
    }
    // Its last word, within its own bounds (a drain and a close) and a margin.
    let last = opening;
    while (last !== null && last.type !== 'done') last = await inbox.next(DRAIN_TIMEOUT_MS + 5000);
    if (last?.errors) run.errors.merge(last.errors);
    if (last === null) run.errors.add('timeout', plan.conns, 1, "(the publisher's thread) did not finish");
    await worker.terminate();
  }
  for (const peer of peers) peer.close();
  output(run, report);
  const succeeded =
    report.subscribers === plan.conns &&
    report.published > 0 &&
    run.errors.total() === 0 &&
    run.deliveries === report.published * report.subscribers;
  // socket.io-client's sockets are closed; exit without waiting for their last packets.
  process.exit(succeeded ? 0 : 1);
}

// The run once the publisher's thread is open: sync, publishing, the subscribers' drain.
async function publishThrough(run, worker, inbox, opened, report) {
  const { plan } = run;
  // Every subscriber and the publisher.
  const members = opened.length + 1;
  const giveUp = now() + SYNC_TIMEOUT_MS * 1e6;
  worker.postMessage({ type: 'sync' });
  while (run.synced < members && now() < giveUp) {
    const message = await inbox.next(SYNC_INTERVAL_MS);
    if (message?.type === 'synced') run.synced += 1;
    else if (message !== null) return inbox.push(message);
  }
  if (run.synced < members) {
    run.errors.add(
      'timeout',
      plan.conns,
      1,
      `(the publisher) only ${run.synced} of ${members} connections received a message from it ` +
        `within ${SYNC_TIMEOUT_MS / 1000} s: not in the room?`,
    );
  }
  const cpuBefore = process.cpuUsage();
  worker.postMessage({ type: 'start' });
  let published;
  do published = await inbox.next(); while (published.type === 'synced');
  if (published.type !== 'published') return inbox.push(published);
  run.published = report.published = published.count;
  report.windowS = plan.duration;
  // "Missing" is counted from when the publisher sent its last message, however late this
  // thread hears of it.
  run.drainDeadlineNs = published.endNs + DRAIN_TIMEOUT_MS * 1e6;
  await drain(run, opened, run.drainDeadlineNs);
  for (const peer of opened) peer.close();
  // This process's CPU time, every thread's (the publisher's too).
  const cpu = process.cpuUsage(cpuBefore);
  report.cpuNs = (cpu.user + cpu.system) * 1e3;
  report.spanS = Math.max(report.windowS, (run.lastDeliveryNs - published.atNs) / 1e9);
}

// The percentiles of `histogram` in µs, or nulls.
function percentiles(histogram) {
  if (histogram.count === 0) return { p50: null, p90: null, p99: null, p999: null, max: null };
  const us = (ns) => Math.round(ns) / 1e3;
  return {
    p50: us(histogram.percentile(50)),
    p90: us(histogram.percentile(90)),
    p99: us(histogram.percentile(99)),
    p999: us(histogram.percentile(99.9)),
    max: us(histogram.max),
  };
}

const round = (value, digits) => (value === null || !Number.isFinite(value) ? null : Number(value.toFixed(digits)));

function duration(us) {
  if (us === null) return '-';
  if (us < 1e3) return `${us.toFixed(0)} µs`;
  if (us < 1e6) return `${(us / 1e3).toFixed(2)} ms`;
  return `${(us / 1e6).toFixed(2)} s`;
}

function output(run, report) {
  const { plan } = run;
  const expected = report.published * report.subscribers;
  const perS = report.spanS > 0 ? run.deliveries / report.spanS : null;
  const latency = percentiles(run.latency);
  const handshakes = report.subscribers > 0 && report.connectS > 0 ? report.subscribers / report.connectS : null;
  const cpuPerDelivery = report.cpuNs !== null && run.deliveries > 0 ? report.cpuNs / run.deliveries : null;
  if (plan.json) {
    const json = {
      mode: 'fanout',
      client: 'socket.io-client',
      url: plan.urls[0],
      room: plan.room,
      conns: plan.conns,
      size: plan.size,
      rate: round(plan.rate, 1),
      duration_s: round(report.windowS, 3),
      connections_opened: report.subscribers,
      handshakes_per_s: round(handshakes, 1),
      published: report.published,
      deliveries: run.deliveries,
      expected_deliveries: expected,
      delivery_span_s: round(report.spanS, 3),
      deliveries_per_s: round(perS, 1),
      latency_us: latency,
      errors: run.errors.counts,
      client_cpu_s: round(report.cpuNs === null ? null : report.cpuNs / 1e9, 3),
      client_cpu_ns_per_delivery: round(cpuPerDelivery, 1),
      nodes: run.nodes,
    };
    process.stdout.write(`${JSON.stringify(json)}\n`);
  } else {
    const line = (label, text) => `  ${label.padEnd(13)}${text}`;
    const lines = [`socketio load --fanout ${plan.urls[0]}`];
    lines.push(
      line(
        'subscribers',
        `${report.subscribers} of ${plan.conns} opened in room ${JSON.stringify(plan.room)}` +
          (handshakes === null ? '' : `, ${handshakes.toFixed(0)} handshakes/s`),
      ),
    );
    if (plan.urls.length > 1) {
      lines.push(line('nodes', run.nodes.map((node, i) =>
        `${node.url} ${node.subscribers}${i === 0 ? ' (and the publisher)' : ''}`).join(', ')));
    }
    lines.push(line('published', `${report.published} messages of ${plan.size} bytes, paced at ${plan.rate} msgs/s, ${report.windowS.toFixed(2)} s`));
    lines.push(line('delivered', `${run.deliveries} of ${expected} expected, ${perS === null ? '-' : perS.toFixed(0)} deliveries/s (the last ${report.spanS.toFixed(2)} s after the first message)`));
    lines.push(line('latency', latency.p50 === null ? '-' :
      `p50 ${duration(latency.p50)}  p90 ${duration(latency.p90)}  p99 ${duration(latency.p99)}  p99.9 ${duration(latency.p999)}  max ${duration(latency.max)}`));
    lines.push(line('errors', run.errors.total() === 0 ? 'none' :
      Object.entries(run.errors.counts).map(([kind, count]) => `${kind} ${count}`).join(', ')));
    lines.push(line('client cpu', report.cpuNs === null ? 'unknown' :
      `${(report.cpuNs / 1e9).toFixed(2)} s${cpuPerDelivery === null ? '' : `, ${cpuPerDelivery.toFixed(0)} ns per delivery`}`));
    process.stdout.write(`${lines.join('\n')}\n`);
  }
  for (const kind of ERROR_KINDS) {
    const count = run.errors.counts[kind];
    if (count > 0) {
      process.stderr.write(`socketio load: ${count} ${kind} error${count === 1 ? '' : 's'}, the first: ${run.errors.samples[kind]}\n`);
    }
  }
  if (report.subscribers === 0) process.stderr.write(`socketio load: no subscriber could connect to ${plan.urls.join(', ')}\n`);
  else if (report.published === 0) process.stderr.write('socketio load: nothing was published\n');
  else if (run.deliveries !== expected) process.stderr.write(`socketio load: ${run.deliveries} deliveries of ${expected} expected\n`);
}

if (isMainThread) await main();
else await publisherThread();
