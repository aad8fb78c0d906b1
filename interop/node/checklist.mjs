// What the Chromium checks (browser_check.mjs, chat_check.mjs) share: a checklist of steps
// printed as `PASS <step>` / `FAIL <step>: <reason>` and `N passed, M failed`, bounded in
// time as a whole, and Debian's headless Chromium launched on a fresh temporary profile.
//
// Chromium is /usr/bin/chromium (CHROMIUM overrides the path); playwright never downloads
// a browser here. It runs as root: no sandbox.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

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

/** Steps run in order; after a failed one the rest fail as not run. */
export class Checklist {
  /**
   * @param {number} steps how many steps the run has (those left fail on overrun)
   * @param {number} totalTimeoutMs the bound on the whole run
   */
  constructor(steps, totalTimeoutMs) {
    this.steps = steps;
    this.passed = 0;
    this.failed = 0;
    this.earlierFailed = null;
    /** Console messages and errors from the pages, shown on failure. */
    this.pageLog = [];
    /** The browser, once launched. */
    this.context = null;
    this.userDataDir = mkdtempSync(join(tmpdir(), 'wsworker-chromium-'));
    // The whole run is bounded: on overrun, fail what is left, kill the browser, exit 1.
    this.watchdog = setTimeout(() => {
      const left = this.steps - this.passed - this.failed;
      console.log(`FAIL timeout: the run took more than ${totalTimeoutMs / 1000} s`);
      this.failed += Math.max(left, 1);
      this.finish();
      this.cleanup();
      process.exit(1); // playwright kills the browser it launched on exit
    }, totalTimeoutMs);
  }

  /** Runs step `name` unless an earlier one failed; `fn` may return a note to print. */
  async step(name, fn) {
    if (this.earlierFailed) {
      this.failed++;
      console.log(`FAIL ${name}: not run, ${this.earlierFailed} failed`);
      return;
    }
    try {
      const note = await fn();
      this.passed++;
      console.log(`PASS ${name}${note ? ` (${note})` : ''}`);
    } catch (err) {
      this.failed++;
      this.earlierFailed = name;
      console.log(`FAIL ${name}: ${String(err.message || err).split('\n')[0]}`);
    }
  }

  /** Launches Chromium with `args` beyond the usual ones; returns its context. */
  async launch({ args = [], ignoreCertificateErrors = false, viewport }) {
    // launchPersistentContext gives Chromium our fresh --user-data-dir (plain launch()
    // refuses that flag); chromiumSandbox stays off so it works as root.
    this.context = await chromium.launchPersistentContext(this.userDataDir, {
      executablePath: EXECUTABLE,
      headless: true,
      chromiumSandbox: false,
      args: [...ARGS, ...args, ...(ignoreCertificateErrors ? ['--ignore-certificate-errors'] : [])],
      ignoreHTTPSErrors: ignoreCertificateErrors,
      viewport,
      timeout: 15_000,
    });
    return this.context;
  }

  /** Records `page`'s console, errors and WebSockets in the page log, each line after `label`. */
  watch(page, label = '') {
    page.on('console', (msg) => this.pageLog.push(`${label}console.${msg.type()}: ${msg.text()}`));
    page.on('pageerror', (err) => this.pageLog.push(`${label}page error: ${err.message}`));
    page.on('websocket', (ws) => {
      this.pageLog.push(`${label}websocket ${ws.url()}`);
      ws.on('socketerror', (e) => this.pageLog.push(`${label}websocket error: ${e}`));
      ws.on('close', () => this.pageLog.push(`${label}websocket closed ${ws.url()}`));
    });
  }

  cleanup() {
    try {
      rmSync(this.userDataDir, { recursive: true, force: true });
    } catch {
      // best effort
    }
  }

  finish() {
    if (this.failed > 0 && this.pageLog.length) {
      console.log('page log:');
      for (const line of this.pageLog.slice(-30)) console.log(`  ${line}`);
    }
    console.log(`${this.passed} passed, ${this.failed} failed`);
  }

  /** Runs `main` (which calls `step`), closes the browser, prints the tally and exits. */
  async run(main) {
    try {
      await main();
    } catch (err) {
      this.failed++;
      console.log(`FAIL internal: ${err.stack || err}`);
    }
    if (this.context) {
      await Promise.race([this.context.close().catch(() => {}), new Promise((r) => setTimeout(r, 5_000))]);
    }
    clearTimeout(this.watchdog);
    this.cleanup();
    this.finish();
    process.exit(this.failed === 0 ? 0 : 1);
  }
}
