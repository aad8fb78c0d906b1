#!/usr/bin/env node
// Headless Chromium loads the demo page (web/index.html) from a server and talks to it.
//
//   node browser_check.mjs http://127.0.0.1:PORT/ screenshot.png
//   node browser_check.mjs --ignore-certificate-errors https://127.0.0.1:PORT/ screenshot.png
//   node browser_check.mjs --expect-deflate http://127.0.0.1:PORT/ screenshot.png
//
// With --expect-deflate the page's ws.extensions must start with permessage-deflate (the
// server accepted Chromium's own offer), a 2000-character message makes a round trip,
// compressed both ways (Chromium compresses every message; the server, those of 32 bytes
// or more), and so does a 6000-character text of varied words, twice: the second copy may
// refer back into the first no further than the window the server answered (4 KiB for
// `client_max_window_bits=12`), or the server, which keeps only that much of Chromium's
// context, fails the connection.
//
// With --expect-h2 (over https, against `serve --http2`) the page must arrive over HTTP/2
// and the WebSocket open inside that connection (RFC 8441): the browser's own network log
// (DevTools protocol) must show its handshake answered 200, not 101.
//
// Over https the page talks wss:// to the same port; --ignore-certificate-errors lets
// Chromium accept a test certificate (for tests only: it accepts any certificate).
//
// The server must serve web/index.html on GET / and answer each WebSocket message on the
// same port with `hello <message>` (as `wsworker serve` does). Steps: the page opens
// (#state OPEN), "tom" is typed and sent, a `.received` entry shows "hello tom", the
// screenshot is taken, Close is clicked and #state becomes CLOSED after a clean close.
// Prints `PASS <step>` / `FAIL <step>: <reason>`, the page's ws.protocol and
// ws.extensions, and `N passed, M failed`; exits non-zero on any failure. Everything is
// bounded by 30 s. Uses Debian's /usr/bin/chromium (CHROMIUM overrides the path);
// playwright never downloads a browser here.

import { Checklist } from './checklist.mjs';

const TOTAL_TIMEOUT_MS = 30_000;
const STEP_TIMEOUT_MS = 10_000;

const IGNORE_CERT_FLAG = '--ignore-certificate-errors';
const ignoreCertificateErrors = process.argv.includes(IGNORE_CERT_FLAG);
const EXPECT_DEFLATE_FLAG = '--expect-deflate';
const expectDeflate = process.argv.includes(EXPECT_DEFLATE_FLAG);
const EXPECT_H2_FLAG = '--expect-h2';
const expectH2 = process.argv.includes(EXPECT_H2_FLAG);
const FLAGS = [IGNORE_CERT_FLAG, EXPECT_DEFLATE_FLAG, EXPECT_H2_FLAG];
const positional = process.argv.slice(2).filter((arg) => !FLAGS.includes(arg));
const [pageUrl, screenshotPath] = positional;
if (!pageUrl || !screenshotPath || positional.length !== 2) {
  process.stderr.write(
    `usage: node browser_check.mjs [${IGNORE_CERT_FLAG}] [${EXPECT_DEFLATE_FLAG}] [${EXPECT_H2_FLAG}] http(s)://HOST:PORT/ screenshot.png\n`);
  process.exit(2);
}

const STEPS = ['launch', 'page-load', 'open', 'send-receive', 'screenshot', 'close'];
if (expectDeflate) STEPS.splice(4, 0, 'send-receive-long', 'send-receive-twice');
if (expectH2) STEPS.splice(3, 0, 'http2');
const checklist = new Checklist(STEPS.length, TOTAL_TIMEOUT_MS);

async function main() {
  const step = checklist.step.bind(checklist);

  let page;
  // The WebSocket handshakes' answers, from the browser's network log.
  const handshakes = [];
  await step('launch', async () => {
    const context = await checklist.launch({ ignoreCertificateErrors, viewport: { width: 760, height: 600 } });
    page = context.pages()[0] || (await context.newPage());
    page.setDefaultTimeout(STEP_TIMEOUT_MS);
    checklist.watch(page);
    if (expectH2) {
      const cdp = await context.newCDPSession(page);
      await cdp.send('Network.enable');
      cdp.on('Network.webSocketHandshakeResponseReceived', (event) => handshakes.push(event.response));
    }
    const agent = await page.evaluate(() => navigator.userAgent);
    return (agent.match(/(?:Headless)?Chrome\/[\d.]+/) || [agent])[0];
  });

  await step('page-load', async () => {
    const response = await page.goto(pageUrl, { waitUntil: 'load', timeout: STEP_TIMEOUT_MS });
    if (!response || !response.ok()) throw new Error(`GET ${pageUrl} answered ${response?.status()}`);
    const title = await page.title();
    if (title !== 'wsworker demo') throw new Error(`page title is ${JSON.stringify(title)}`);
  });

  await step('open', async () => {
    try {
      await page.waitForFunction(() => document.querySelector('#state')?.textContent === 'OPEN');
    } catch {
      const state = await page.textContent('#state');
      throw new Error(`#state stayed ${state}; log: ${await logText(page)}`);
    }
    const seen = await page.evaluate(() => ({ url: window.ws?.url, protocol: window.ws?.protocol, extensions: window.ws?.extensions }));
    console.log(`ws.url: ${JSON.stringify(seen.url)}`);
    console.log(`ws.protocol: ${JSON.stringify(seen.protocol)}`);
    console.log(`ws.extensions: ${JSON.stringify(seen.extensions)}`);
    if (expectDeflate && !(seen.extensions || '').startsWith('permessage-deflate')) {
      throw new Error(`ws.extensions is ${JSON.stringify(seen.extensions)}, expected permessage-deflate`);
    }
  });

  if (expectH2) {
    await step('http2', async () => {
      const page_protocol = await page.evaluate(() => performance.getEntriesByType('navigation')[0]?.nextHopProtocol);
      if (page_protocol !== 'h2') throw new Error(`the page came over ${page_protocol}, not h2`);
      const statuses = handshakes.map((response) => response.status);
      if (statuses.length === 0) throw new Error('no WebSocket handshake in the network log');
      if (!statuses.every((status) => status === 200)) {
        throw new Error(`WebSocket handshakes answered ${JSON.stringify(statuses)}: not over HTTP/2 (RFC 8441 answers 200)`);
      }
      return `page over h2, WebSocket handshake answered ${statuses.join(', ')}`;
    });
  }

  await step('send-receive', async () => {
    await page.fill('#message', 'tom');
    await page.click('#send');
    try {
      await page.waitForFunction(() =>
        [...document.querySelectorAll('#log .received')].some((e) => e.textContent.includes('hello tom')));
    } catch {
      throw new Error(`no .received entry with "hello tom"; log: ${await logText(page)}`);
    }
    const sent = await page.$$eval('#log .sent', (entries) => entries.map((e) => e.textContent));
    if (!sent.includes('\u2192 tom')) throw new Error(`no .sent entry "\u2192 tom" (got ${JSON.stringify(sent)})`);
  });

  if (expectDeflate) {
    await step('send-receive-long', async () => {
      const long = 'tom '.repeat(500);
      await page.fill('#message', long);
      await page.click('#send');
      try {
        await page.waitForFunction((text) =>
          [...document.querySelectorAll('#log .received')].some((e) => e.textContent.includes(`hello ${text}`)), long);
      } catch {
        throw new Error(`no .received entry with the long reply; log: ${await logText(page)}`);
      }
      return `${long.length} characters, compressed both ways`;
    });
    await step('send-receive-twice', async () => {
      const words = ['alpha', 'bravo', 'charlie', 'delta', 'echo', 'foxtrot', 'golf', 'hotel'];
      let x = 12345;
      const next = () => (x = (x * 1103515245 + 12345) % 2147483648);
      let text = '';
      while (text.length < 6000) text += `${words[next() % words.length]}${next() % 1000} `;
      text = text.slice(0, 6000);
      for (let i = 0; i < 2; i++) {
        await page.fill('#message', text);
        await page.click('#send');
      }
      try {
        await page.waitForFunction((sent) =>
          [...document.querySelectorAll('#log .received')]
            .filter((e) => e.textContent.includes(`hello ${sent}`)).length >= 2, text);
      } catch {
        throw new Error(`not two .received entries with the 6000-character reply; state ${await page.textContent('#state')}`);
      }
      return `${text.length} characters twice, compressed both ways`;
    });
  }

  await step('screenshot', async () => {
    await page.screenshot({ path: screenshotPath, fullPage: true, timeout: STEP_TIMEOUT_MS });
    return screenshotPath;
  });

  await step('close', async () => {
    await page.click('#close');
    try {
      await page.waitForFunction(() => document.querySelector('#state')?.textContent === 'CLOSED');
    } catch {
      throw new Error(`#state stayed ${await page.textContent('#state')} after Close`);
    }
    const closeEvent = await page.waitForFunction(() =>
      [...document.querySelectorAll('#log .event')].map((e) => e.textContent).find((t) => t.startsWith('close ')));
    const text = await closeEvent.jsonValue();
    if (!text.includes('code=1000') || !text.includes('wasClean=true')) throw new Error(`not a clean close: ${text}`);
    return text;
  });
}

async function logText(page) {
  try {
    const entries = await page.$$eval('#log li', (items) => items.map((e) => e.textContent));
    return JSON.stringify(entries.slice(-5));
  } catch {
    return '(unavailable)';
  }
}

await checklist.run(main);
