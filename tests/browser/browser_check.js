// Drives the browser example (examples/browser) in headless chromium and checks what the page shows.
//
// Usage: node browser_check.js PAGE_URL ROUTER_URL OUT_DIR [SERIALIZER...]
//   PAGE_URL    the example's index.html as a static file server serves it (http://127.0.0.1:PORT/index.html)
//   ROUTER_URL  kreisel's WebSocket URL, where examples/browser/worker.py is registered
//   OUT_DIR     screenshots go here (<serializer>-done.png, <serializer>-canceled.png)
//   SERIALIZER  json and/or msgpack (default: both)
//
// Per serializer, in a fresh browser context: the page connects and shows the negotiated subprotocol; a job runs
// to the end (both progress bars at 100%, events end in "done", the result the worker computed); a second, longer
// job is canceled midway (the call ends "canceled" with the worker's own message, and the worker's last event says
// "canceled"). Prints one line per passed check and "PASSED ..." last; exits non-zero on the first failure, an
// error on the page, or after the overall timeout. Chromium is Debian's /usr/bin/chromium (CHROMIUM overrides),
// launched by playwright-core, which downloads no browser of its own.
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const { chromium } = require('playwright-core');

const [pageUrl, routerUrl, outDir, ...serializerArgs] = process.argv.slice(2);
if (!pageUrl || !routerUrl || !outDir) {
  console.error('usage: node browser_check.js PAGE_URL ROUTER_URL OUT_DIR [SERIALIZER...]');
  process.exit(2);
}
const serializers = serializerArgs.length ? serializerArgs : ['json', 'msgpack'];
const STEP_TIMEOUT_MS = 20000;

// Nothing may hang: the whole run ends after this, whatever happens.
const overall = setTimeout(() => {
  console.log('FAILED browser example: overall timeout (120 s)');
  process.exit(1);
}, 120000);

let checks = 0;
function ok(what) {
  checks += 1;
  console.log(`ok  ${what}`);
}
function same(what, got, expected) {
  if (got !== expected) throw new Error(`${what}: got ${JSON.stringify(got)}, expected ${JSON.stringify(expected)}`);
  ok(`${what}: ${JSON.stringify(got)}`);
}
function matches(what, got, pattern) {
  if (!pattern.test(got)) throw new Error(`${what}: ${JSON.stringify(got)} does not match ${pattern}`);
  ok(`${what}: ${JSON.stringify(got)}`);
}

const text = (page, selector) => page.locator(selector).textContent();
const percent = async (page, selector) => Number((await text(page, selector)).replace('%', ''));

async function waitForText(page, selector, expected, what) {
  try {
    await page.waitForFunction(
      ([sel, want]) => document.querySelector(sel) && document.querySelector(sel).textContent === want,
      [selector, expected],
      { timeout: STEP_TIMEOUT_MS },
    );
  } catch (error) {
    const log = await text(page, '#log').catch(() => '?');
    throw new Error(`${what}: ${selector} never showed ${JSON.stringify(expected)} (shows ` +
      `${JSON.stringify(await text(page, selector).catch(() => '?'))}); page log:\n${log}`);
  }
}

async function scenario(browser, serializer) {
  const context = await browser.newContext({ viewport: { width: 900, height: 860 } });
  const page = await context.newPage();
  const pageErrors = [];
  page.on('pageerror', (error) => pageErrors.push(String(error)));
  page.on('console', (message) => {
    if (message.type() === 'error') pageErrors.push(`console: ${message.text()}`);
  });
  const query = new URLSearchParams({ router: routerUrl, serializer, steps: '10', delay: '30' });
  await page.goto(`${pageUrl}?${query}`);
  const label = `[${serializer}]`;

  await waitForText(page, '#connection-state', 'connected', `${label} connect`);
  same(`${label} the page negotiated`, await text(page, '#protocol'), `wamp.2.${serializer}`);
  await page.waitForSelector('#run:not([disabled])', { timeout: STEP_TIMEOUT_MS });

  // A job to the end: 10 steps, sum of squares 385.
  await page.click('#run');
  await waitForText(page, '#call-state', 'done', `${label} job`);
  await waitForText(page, '#event-state', 'done', `${label} job events`);
  same(`${label} progressive results reached`, await text(page, '#call-percent'), '100%');
  same(`${label} progress events reached`, await text(page, '#event-percent'), '100%');
  same(`${label} result`, await text(page, '#result'), 'sum of squares 1..10 = 385');
  await page.screenshot({ path: path.join(outDir, `${serializer}-done.png`) });

  // A long job (1000 steps of 50 ms), canceled once both channels showed progress.
  await page.fill('#steps', '1000');
  await page.fill('#delay', '50');
  await page.click('#run');
  await waitForText(page, '#call-state', 'running', `${label} second job`);
  await page.waitForFunction(
    () => ['#call-percent', '#event-percent'].every((s) => Number(document.querySelector(s).textContent.replace('%', '')) >= 1),
    null,
    { timeout: STEP_TIMEOUT_MS },
  );
  ok(`${label} both channels showed progress before the cancel`);
  await page.click('#cancel');
  await waitForText(page, '#call-state', 'canceled', `${label} cancel`);
  await waitForText(page, '#event-state', 'canceled', `${label} the worker's canceled event`);
  matches(`${label} the worker's answer`, await text(page, '#result'), /^job job-[a-z0-9]+ stopped at step \d+ of 1000$/);
  const stoppedAt = await percent(page, '#event-percent');
  if (!(stoppedAt >= 1 && stoppedAt < 100)) throw new Error(`${label} canceled at ${stoppedAt}%`);
  ok(`${label} canceled midway, at ${stoppedAt}%`);
  await page.screenshot({ path: path.join(outDir, `${serializer}-canceled.png`) });

  if (pageErrors.length) throw new Error(`${label} errors on the page:\n${pageErrors.join('\n')}`);
  ok(`${label} no errors on the page`);
  await context.close();
}

async function main() {
  fs.mkdirSync(outDir, { recursive: true });
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    // playwright-core runs chromium without its sandbox (we run as root) and with a fresh profile directory.
    args: [
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    timeout: 30000,
  });
  try {
    ok(`chromium ${browser.version()}`);
    for (const serializer of serializers) await scenario(browser, serializer);
  } finally {
    await browser.close();
  }
  console.log(`PASSED browser example (${serializers.join(', ')}): ${checks} checks`);
}

main().then(
  () => {
    clearTimeout(overall);
  },
  (error) => {
    console.log(`FAILED browser example: ${error && error.stack ? error.stack : error}`);
    process.exit(1);
  },
);
