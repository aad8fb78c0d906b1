#!/usr/bin/env node
// Headless Chromium keeps a chat through the loss of its node: the demo page's chat view
// (web/index.html with web/resume.js) on node 1 of `wsworker serve --mode chat --redis`,
// with node 2 as the other node to fall back on. A driver (crates/cli/tests/resume.rs)
// sends the room numbered messages from elsewhere and kills node 1 midway; the page
// reconnects to node 2, resumes, and shows every message exactly once, in order.
//
//   node resume_check.mjs --room ROOM --count N --nodes HOST2:PORT2 http://HOST1:PORT1/
//
// Steps, each printed `PASS <step>` / `FAIL <step>: <reason>` as it ends (the driver
// follows them): `launch`, `page-load` (the page with ?room, ?user=pager and ?nodes),
// `join` (Connect; #chat-state OPEN on node 1 over wsworker.resume.v1), `probe` (a
// received message that starts with `probe` shows: the page is in the room, the driver
// may start), `resume` (a `lost` event, then a `resumed` one that recovered the room's
// topic `g:ROOM`, and the chat's url is node 2's), `exactly-once` (once `N` shows, the
// received messages after the probes are exactly `1` … `N`), `leave` (a clean close).
//
// Waits on the page (waitForFunction), never for fixed times; 90 s in all. Prints `N
// passed, M failed`; exits non-zero on any failure.

import { Checklist } from './checklist.mjs';

const TOTAL_TIMEOUT_MS = 90_000;
// The longest wait: for the driver to send, kill node 1 and let the page come back.
const STEP_TIMEOUT_MS = 40_000;
const POLL = { polling: 50 };

const args = process.argv.slice(2);
const option = (name) => {
  const i = args.indexOf(name);
  return i >= 0 && i + 1 < args.length ? args.splice(i, 2)[1] : null;
};
const room = option('--room');
const count = Number(option('--count'));
const nodes = option('--nodes');
const [pageUrl] = args;
if (!room || !(count > 0) || !nodes || args.length !== 1 || !/^https?:\/\//.test(pageUrl)) {
  process.stderr.write('usage: node resume_check.mjs --room ROOM --count N --nodes HOST:PORT http://HOST:PORT/\n');
  process.exit(2);
}
const USER = 'pager';
const TOPIC = `g:${room}`;

const STEPS = ['launch', 'page-load', 'join', 'probe', 'resume', 'exactly-once', 'leave'];
const checklist = new Checklist(STEPS.length, TOTAL_TIMEOUT_MS);

async function chatLogText(page) {
  try {
    const entries = await page.$$eval('#chat-log li', (items) => items.map((e) => `${e.className}: ${e.textContent}`));
    return JSON.stringify(entries.filter((e) => !e.startsWith('received: ')).concat(entries.slice(-3)));
  } catch {
    return '(unavailable)';
  }
}

// Waits until `fn` (run in the page with `arg`) is truthy; returns its value.
async function until(page, what, fn, arg) {
  try {
    return await (await page.waitForFunction(fn, arg, POLL)).jsonValue();
  } catch {
    throw new Error(`${what}; chat log: ${await chatLogText(page)}`);
  }
}

async function main() {
  const step = checklist.step.bind(checklist);
  let page;

  await step('launch', async () => {
    const context = await checklist.launch({ viewport: { width: 760, height: 1000 } });
    page = context.pages()[0] || (await context.newPage());
    page.setDefaultTimeout(STEP_TIMEOUT_MS);
    checklist.watch(page);
  });

  await step('page-load', async () => {
    const url = new URL(pageUrl);
    url.search = new URLSearchParams({ room, user: USER, nodes }).toString();
    const response = await page.goto(url.href, { waitUntil: 'load' });
    if (!response || !response.ok()) throw new Error(`GET ${url} answered ${response?.status()}`);
    const loaded = await page.evaluate(() => typeof window.ResumingWebSocket);
    if (loaded !== 'function') throw new Error(`window.ResumingWebSocket is ${loaded}: /resume.js did not load`);
    return url.href;
  });

  const origin = new URL(pageUrl);
  const query = `room=${encodeURIComponent(room)}&user=${USER}`;
  const first = `ws://${origin.host}/?${query}`;
  const second = `ws://${nodes}/?${query}`;

  await step('join', async () => {
    await page.click('#chat-connect');
    await until(page, '#chat-state did not become OPEN', () => document.querySelector('#chat-state')?.textContent === 'OPEN');
    const seen = await page.evaluate(() => ({ url: window.chat.url, urls: window.chat.urls, protocol: window.chat.protocol }));
    if (JSON.stringify(seen.urls) !== JSON.stringify([first, second])) throw new Error(`the chat's urls are ${JSON.stringify(seen.urls)}`);
    if (seen.url !== first) throw new Error(`the chat is on ${seen.url}, expected ${first}`);
    if (seen.protocol !== 'wsworker.resume.v1') throw new Error(`the server agreed to ${JSON.stringify(seen.protocol)}`);
    return `${seen.url}, protocol ${seen.protocol}`;
  });

  await step('probe', async () => {
    await until(page, 'no probe shows', () =>
      [...document.querySelectorAll('#chat-log .received')].some((e) => e.textContent.startsWith('probe')));
  });

  await step('resume', async () => {
    const lost = await until(page, 'the chat never lost its node', () =>
      [...document.querySelectorAll('#chat-log .event')].map((e) => e.textContent).find((t) => t.startsWith('lost ')));
    const resumed = await until(page, 'the chat never resumed', () =>
      [...document.querySelectorAll('#chat-log .event')].map((e) => e.textContent).find((t) => t.startsWith('resumed: ')));
    if (!resumed.startsWith(`resumed: recovered `) || !resumed.split('; ')[0].split(/[ ,]+/).includes(TOPIC)) {
      throw new Error(`${TOPIC} was not recovered: ${resumed}`);
    }
    const url = await page.evaluate(() => window.chat.url);
    if (url !== second) throw new Error(`the chat is on ${url}, expected ${second}`);
    return `${lost}; ${resumed}`;
  });

  await step('exactly-once', async () => {
    await until(page, `${count} did not show`, (last) => {
      const entries = document.querySelectorAll('#chat-log .received');
      return entries.length > 0 && entries[entries.length - 1].textContent === last;
    }, String(count));
    const got = await page.$$eval('#chat-log .received', (entries) => entries.map((e) => e.textContent));
    const probes = got.findIndex((text) => !text.startsWith('probe'));
    const numbered = got.slice(probes);
    const bad = numbered.findIndex((text, i) => text !== String(i + 1));
    if (bad >= 0 || numbered.length !== count) {
      const at = bad >= 0 ? bad : numbered.length;
      throw new Error(`message ${at + 1} is ${JSON.stringify(numbered[at])} (${numbered.length} in all; ` +
        `around it: ${JSON.stringify(numbered.slice(Math.max(0, at - 3), at + 3))})`);
    }
    return `${count} messages after ${probes} probe(s)`;
  });

  await step('leave', async () => {
    await page.click('#chat-leave');
    const closed = await until(page, 'no close after Leave', () =>
      [...document.querySelectorAll('#chat-log .event')].map((e) => e.textContent).find((t) => t.startsWith('close ')));
    if (!closed.includes('code=1000') || !closed.includes('wasClean=true')) throw new Error(`not a clean close: ${closed}`);
  });
}

await checklist.run(main);
