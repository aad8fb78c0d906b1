#!/usr/bin/env node
// Headless Chromium chats through the demo page's chat view (web/index.html) against
// `wsworker serve --mode chat`: four pages, rooms, a private message, a message to all.
//
//   node chat_check.mjs http://127.0.0.1:PORT/ [http://127.0.0.1:PORT2/ ...]
//   node chat_check.mjs --screenshot shot.png http://127.0.0.1:PORT/
//   node chat_check.mjs --ignore-certificate-errors https://127.0.0.1:PORT/
//
// The pages are spread over the URLs given (page i loads URL i mod n), so with several
// nodes of one chat each page may talk to another node; each page's chat connects back to
// the host it came from. The pages (user, room), in that order:
//   alice  "lobby & co/ü"   bób  "lobby & co/ü"   dave  (no room)   carol  "other"
// With two nodes, alice and dave are on the first, bób and carol on the second: the room's
// messages (alice's and bób's), the private one (carol to alice) and dave's to everyone
// each cross from one node to the other.
// Names with spaces, `&`, `/` and non-ASCII letters check the page's URL encoding.
//
// Steps: `launch`, `page-load` (all four), `join` (each fills #room and #user, clicks
// Connect, #chat-state becomes OPEN, the chat's url is the page's own host with the room
// and the user encoded; then each sends `@<itself> ready` and waits for it: that proves the
// server ran its join for the connection, since it reads the connection's messages only
// after; the note names the subprotocol the server agreed to: wsworker.resume.v1 with
// --redis, through web/resume.js, none without), `room` (alice says `hi room`; alice and bób get it), `text-not-html` (bób sends
// markup to the room; alice shows it as text and has no element made of it), `private`
// (carol, in another room, sends `@alice from carol`; alice gets it), `everyone` (dave,
// with no room, sends `to everyone`; all four get it), `exact-lists` (each page's received
// messages, in order, are exactly what it should have: carol and dave nothing of the room,
// only alice the private message), `screenshot` (alice's page, with --screenshot), `leave`
// (each clicks Leave: a clean close 1000).
//
// Waits on the pages (waitForFunction), never for fixed times. Prints `PASS <step>` /
// `FAIL <step>: <reason>` and `N passed, M failed`; exits non-zero on any failure; 30 s
// in all. Chromium as checklist.mjs launches it: /usr/bin/chromium (CHROMIUM overrides),
// headless, no sandbox (root), a fresh temporary profile.

import { Checklist } from './checklist.mjs';

const TOTAL_TIMEOUT_MS = 30_000;
const STEP_TIMEOUT_MS = 10_000;
// waitForFunction checks on a timer: its default, on each animation frame, stalls in the
// pages that are background tabs.
const POLL = { polling: 50 };
// Four pages share one window, so three are background tabs: keep their timers and
// rendering at full speed (the page's readyState display and playwright's checks).
const BACKGROUND_ARGS = [
  '--disable-background-timer-throttling',
  '--disable-backgrounding-occluded-windows',
  '--disable-renderer-backgrounding',
];

const IGNORE_CERT_FLAG = '--ignore-certificate-errors';
const SCREENSHOT_FLAG = '--screenshot';
const urls = [];
let screenshotPath = null;
let ignoreCertificateErrors = false;
let badArgument = false;
for (let i = 2; i < process.argv.length; i++) {
  const arg = process.argv[i];
  if (arg === IGNORE_CERT_FLAG) ignoreCertificateErrors = true;
  else if (arg === SCREENSHOT_FLAG && i + 1 < process.argv.length) screenshotPath = process.argv[++i];
  else if (/^https?:\/\//.test(arg)) urls.push(arg);
  else badArgument = true;
}
if (badArgument || urls.length === 0) {
  process.stderr.write(
    `usage: node chat_check.mjs [${IGNORE_CERT_FLAG}] [${SCREENSHOT_FLAG} FILE] http(s)://HOST:PORT/ [more URLs]\n`);
  process.exit(2);
}

const ROOM = 'lobby & co/ü';
const PEOPLE = [
  { user: 'alice', room: ROOM },
  { user: 'bób', room: ROOM },
  { user: 'dave', room: '' },
  { user: 'carol', room: 'other' },
];
const MARKUP = '<img src=x onerror="window.pwned=1"><b>bold</b>';
// What each page must have received, in order, at the end.
const EXPECTED = {
  alice: ['@alice ready', 'hi room', MARKUP, '@alice from carol', 'to everyone'],
  'bób': ['@bób ready', 'hi room', MARKUP, 'to everyone'],
  carol: ['@carol ready', 'to everyone'],
  dave: ['@dave ready', 'to everyone'],
};

const STEPS = ['launch', 'page-load', 'join', 'room', 'text-not-html', 'private', 'everyone', 'exact-lists', 'leave'];
if (screenshotPath) STEPS.splice(STEPS.length - 1, 0, 'screenshot');
const checklist = new Checklist(STEPS.length, TOTAL_TIMEOUT_MS);

// The texts of a page's received chat entries, in order.
function received(page) {
  return page.$$eval('#chat-log .received', (entries) => entries.map((e) => e.textContent));
}

// Waits until `page`'s last received chat entry is `text`.
async function waitForLast(person, text) {
  try {
    await person.page.waitForFunction((want) => {
      const entries = document.querySelectorAll('#chat-log .received');
      return entries.length > 0 && entries[entries.length - 1].textContent === want;
    }, text, POLL);
  } catch {
    throw new Error(`${person.user} did not get ${JSON.stringify(text)}; chat log: ${await chatLogText(person.page)}`);
  }
}

// Sends `text` from `person`'s chat view. Each action on a page brings it to the front
// first: playwright's clicks and fills wait for animation frames, which a background tab
// hardly gets (about a second per action otherwise).
async function say(person, text) {
  await person.page.bringToFront();
  await person.page.fill('#chat-message', text);
  await person.page.click('#chat-send');
}

async function chatLogText(page) {
  try {
    const entries = await page.$$eval('#chat-log li', (items) => items.map((e) => `${e.className}: ${e.textContent}`));
    return JSON.stringify(entries.slice(-6));
  } catch {
    return '(unavailable)';
  }
}

async function main() {
  const step = checklist.step.bind(checklist);
  const [alice, bob, dave, carol] = PEOPLE;

  await step('launch', async () => {
    const context = await checklist.launch({
      args: BACKGROUND_ARGS,
      ignoreCertificateErrors,
      viewport: { width: 760, height: 1000 },
    });
    for (const [i, person] of PEOPLE.entries()) {
      const page = i === 0 && context.pages()[0] ? context.pages()[0] : await context.newPage();
      page.setDefaultTimeout(STEP_TIMEOUT_MS);
      checklist.watch(page, `${person.user} `);
      person.page = page;
      person.url = urls[i % urls.length];
    }
  });

  await step('page-load', async () => {
    for (const { page, url } of PEOPLE) {
      const response = await page.goto(url, { waitUntil: 'load', timeout: STEP_TIMEOUT_MS });
      if (!response || !response.ok()) throw new Error(`GET ${url} answered ${response?.status()}`);
      const title = await page.title();
      if (title !== 'wsworker demo') throw new Error(`page title is ${JSON.stringify(title)}`);
    }
    return `${PEOPLE.length} pages on ${urls.length} URL(s): ${PEOPLE.map(({ user, url }) => `${user} on ${url}`).join(', ')}`;
  });

  await step('join', async () => {
    for (const person of PEOPLE) {
      const { page, user, room, url } = person;
      await page.bringToFront();
      await page.fill('#room', room);
      await page.fill('#user', user);
      await page.click('#chat-connect');
      try {
        await page.waitForFunction(() => document.querySelector('#chat-state')?.textContent === 'OPEN', null, POLL);
      } catch {
        throw new Error(`${user}: #chat-state stayed ${await page.textContent('#chat-state')}; chat log: ${await chatLogText(page)}`);
      }
      const origin = new URL(url);
      const scheme = origin.protocol === 'https:' ? 'wss:' : 'ws:';
      const query = [room && `room=${encodeURIComponent(room)}`, `user=${encodeURIComponent(user)}`].filter(Boolean).join('&');
      const want = `${scheme}//${origin.host}/?${query}`;
      const got = await page.evaluate(() => window.chat?.url);
      if (got !== want) throw new Error(`${user}: the chat's url is ${JSON.stringify(got)}, expected ${JSON.stringify(want)}`);
    }
    // Each one's own private message comes back only once the server has bound its user and
    // joined its room (it reads a connection's messages after its on_connect).
    for (const person of PEOPLE) await say(person, `@${person.user} ready`);
    for (const person of PEOPLE) await waitForLast(person, `@${person.user} ready`);
    const { url, protocol } = await alice.page.evaluate(() => ({ url: window.chat.url, protocol: window.chat.protocol }));
    return `e.g. ${url}, protocol ${protocol || '(none)'}`;
  });

  await step('room', async () => {
    await say(alice, 'hi room');
    await waitForLast(alice, 'hi room');
    await waitForLast(bob, 'hi room');
  });

  await step('text-not-html', async () => {
    await say(bob, MARKUP);
    await waitForLast(bob, MARKUP);
    await waitForLast(alice, MARKUP);
    const made = await alice.page.$$eval('#chat-log img, #chat-log b', (elements) => elements.length);
    const pwned = await alice.page.evaluate(() => window.pwned);
    if (made !== 0 || pwned !== undefined) throw new Error(`the message became markup: ${made} element(s), pwned=${pwned}`);
  });

  await step('private', async () => {
    await say(carol, '@alice from carol');
    await waitForLast(alice, '@alice from carol');
  });

  await step('everyone', async () => {
    await say(dave, 'to everyone');
    for (const person of PEOPLE) await waitForLast(person, 'to everyone');
  });

  await step('exact-lists', async () => {
    for (const { page, user } of PEOPLE) {
      const got = await received(page);
      const want = EXPECTED[user];
      if (JSON.stringify(got) !== JSON.stringify(want)) {
        throw new Error(`${user} received ${JSON.stringify(got)}, expected ${JSON.stringify(want)}`);
      }
    }
  });

  if (screenshotPath) {
    await step('screenshot', async () => {
      await alice.page.screenshot({ path: screenshotPath, fullPage: true, timeout: STEP_TIMEOUT_MS });
      return screenshotPath;
    });
  }

  await step('leave', async () => {
    for (const { page, user } of PEOPLE) {
      await page.bringToFront();
      await page.click('#chat-leave');
      try {
        await page.waitForFunction(() => document.querySelector('#chat-state')?.textContent === 'CLOSED', null, POLL);
      } catch {
        throw new Error(`${user}: #chat-state stayed ${await page.textContent('#chat-state')} after Leave`);
      }
      const closeEvent = await page.waitForFunction(() =>
        [...document.querySelectorAll('#chat-log .event')].map((e) => e.textContent).find((t) => t.startsWith('close ')), null, POLL);
      const text = await closeEvent.jsonValue();
      if (!text.includes('code=1000') || !text.includes('wasClean=true')) throw new Error(`${user}: not a clean close: ${text}`);
    }
  });
}

await checklist.run(main);
