#!/usr/bin/env node
// Headless Chromium loads the demo page (web/index.html) from a server and talks to it.
//
//   node browser_check.mjs http://127.0.0.1:PORT/ screenshot.png
//   node browser_check.mjs --ignore-certificate-errors https://127.0.0.1:PORT/ screenshot.png
//   node browser_check.mjs --expect-deflate http://127.0.0.1:PORT/ screenshot.png
//
// With --expect-deflate the page's ws.extensions must start with permessage-deflate (the
// server accepted Chromium's own offer), and a 2000-character message makes a round trip,
// compressed both ways (Chromium compresses every message; the server, those of 32 bytes
// or more).
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

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const TOTAL_TIMEOUT_MS = 30_000;
const STEP_TIMEOUT_MS = 10_000;
const EXECUTABLE = process.env.CHROMIUM || '/usr/bin/chromium';
const ARGS = [
  '--headless',
  '--no-sandbox', // we run as root
  '--disable-gpu',
  '--disable-quic',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
];

const IGNORE_CERT_FLAG = '--ignore-certificate-errors';
const ignoreCertificateErrors = process.argv.includes(IGNORE_CERT_FLAG);
const EXPECT_DEFLATE_FLAG = '--expect-deflate';
const expectDeflate = process.argv.includes(EXPECT_DEFLATE_FLAG);
const positional = process.argv.slice(2).filter((arg) => arg !== IGNORE_CERT_FLAG && arg !== EXPECT_DEFLATE_FLAG);
const [pageUrl, screenshotPath] = positional;
if (!pageUrl || !screenshotPath || positional.length !== 2) {
  process.stderr.write(
    `usage: node browser_check.mjs [${IGNORE_CERT_FLAG}] [${EXPECT_DEFLATE_FLAG}] http(s)://HOST:PORT/ screenshot.png\n`);
  process.exit(2);
}
if (ignoreCertificateErrors) ARGS.push(IGNORE_CERT_FLAG);

const STEPS = ['launch', 'page-load', 'open', 'send-receive', 'screenshot', 'close'];
if (expectDeflate) STEPS.splice(4, 0, 'send-receive-long');
let passed = 0;
let failed = 0;
const pageLog = []; // console messages and errors from the page, shown on failure
let context = null;
const userDataDir = mkdtempSync(join(tmpdir(), 'wsworker-chromium-'));

function cleanup() {
  try {
    rmSync(userDataDir, { recursive: true, force: true });
  } catch {
    // best effort
  }
}

function finish() {
  if (failed > 0 && pageLog.length) {
    console.log('page log:');
    for (const line of pageLog.slice(-30)) console.log(`  ${line}`);
  }
  console.log(`${passed} passed, ${failed} failed`);
}

// The whole run is bounded: on overrun, fail what is left, kill the browser, exit 1.
const watchdog = setTimeout(() => {
  const left = STEPS.length - passed - failed;
  console.log(`FAIL timeout: the run took more than ${TOTAL_TIMEOUT_MS / 1000} s`);
  failed += Math.max(left, 1);
  finish();
  cleanup();
  process.exit(1); // playwright kills the browser it launched on exit
}, TOTAL_TIMEOUT_MS);

async function main() {
  let earlierFailed = null;
  async function step(name, fn) {
    if (earlierFailed) {
      failed++;
      console.log(`FAIL ${name}: not run, ${earlierFailed} failed`);
      return;
    }
    try {
      const note = await fn();
      passed++;
      console.log(`PASS ${name}${note ? ` (${note})` : ''}`);
    } catch (err) {
      failed++;
      earlierFailed = name;
      console.log(`FAIL ${name}: ${String(err.message || err).split('\n')[0]}`);
    }
  }

  let page;
  await step('launch', async () => {
    // launchPersistentContext gives Chromium our fresh --user-data-dir (plain launch()
    // refuses that flag); chromiumSandbox stays off so it works as root.
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: EXECUTABLE,
      headless: true,
      chromiumSandbox: false,
      args: ARGS,
      ignoreHTTPSErrors: ignoreCertificateErrors,
      viewport: { width: 760, height: 600 },
      timeout: 15_000,
    });
    page = context.pages()[0] || (await context.newPage());
    page.setDefaultTimeout(STEP_TIMEOUT_MS);
    page.on('console', (msg) => pageLog.push(`console.${msg.type()}: ${msg.text()}`));
    page.on('pageerror', (err) => pageLog.push(`page error: ${err.message}`));
    page.on('websocket', (ws) => {
      pageLog.push(`websocket ${ws.url()}`);
      ws.on('socketerror', (e) => pageLog.push(`websocket error: ${e}`));
      ws.on('close', () => pageLog.push('websocket closed'));
    });
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

try {
  await main();
} catch (err) {
  failed++;
  console.log(`FAIL internal: ${err.stack || err}`);
}
if (context) {
  await Promise.race([context.close().catch(() => {}), new Promise((r) => setTimeout(r, 5_000))]);
}
clearTimeout(watchdog);
cleanup();
finish();
process.exit(failed === 0 ? 0 : 1);
