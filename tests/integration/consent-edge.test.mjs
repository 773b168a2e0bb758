// The browser half of the consent contract meeting the Worker's half: the Worker writes its
// privacy modes over the "__CAPI_MODES__" literal in /t/p.js and gates beacons on "consent"/"gpc".
// These need the Worker that implements that contract (the privacy modes of capi-core/worker).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startSandbox, startWorker, eventually, PIXEL_ID, launchChromium } from './harness.mjs';

let sandbox, browser;
before(async () => {
  sandbox = await startSandbox();
  browser = await launchChromium(['--disable-features=LocalNetworkAccessChecks']);
});
after(async () => { await browser?.close(); sandbox?.stop(); });

async function page(worker, init) {
  const context = await browser.newContext();
  if (init) await context.addInitScript(init);
  const p = await context.newPage();
  const beacons = [];
  p.on('request', (r) => { if (new URL(r.url()).pathname === '/t/e') beacons.push(JSON.parse(r.postData())); });
  await p.route(`${worker.url}/shop/**`, (route) => route.fulfill({
    contentType: 'text/html',
    body: `<!doctype html><script src="/t/p.js" data-pixel="${PIXEL_ID}" data-fbevents="${sandbox.url}/fbevents.js" async></script>`,
  }));
  await p.goto(`${worker.url}/shop/p`);
  await p.waitForFunction(() => window.capi && window.capi.loaded);
  return { context, page: p, beacons };
}

test('CONSENT=required reaches the browser: the served shim waits for consent without data-consent', async () => {
  const worker = await startWorker({ META_GRAPH_URL: sandbox.url, CONSENT: 'required' });
  try {
    const js = await (await worker.fetch('/t/p.js')).text();
    assert.ok(!js.includes('"__CAPI_MODES__"'), 'the Worker wrote its modes over the literal');
    const s = await page(worker);
    await s.page.evaluate(() => fetch('/t/health'));
    assert.deepEqual(s.beacons, [], 'nothing before consent');
    assert.deepEqual(await s.context.cookies(), []);
    await s.page.evaluate(() => window.capi('consent', 'grant'));
    await eventually(() => s.beacons.some((b) => b.event_name === 'PageView' && b.consent === 'granted'), 10_000, 'PageView after grant');
    await s.context.close();
  } finally { await worker.stop(); }
});

test('GPC at the edge: a beacon with gpc:true reaches Meta with LDU', async () => {
  const worker = await startWorker({ META_GRAPH_URL: sandbox.url });
  try {
    const s = await page(worker, () => Object.defineProperty(Navigator.prototype, 'globalPrivacyControl', { get: () => true }));
    const pv = await eventually(() => s.beacons.find((b) => b.event_name === 'PageView'), 10_000, 'PageView beacon');
    assert.equal(pv.gpc, true);
    const server = await eventually(async () => (await sandbox.events()).server.find((e) => e.event_id === pv.event_id), 10_000, 'server copy');
    assert.deepEqual(server.data_processing_options, ['LDU']);
    await s.context.close();
  } finally { await worker.stop(); }
});

test('GPC=drop: the served shim treats a GPC browser as consent refused (no pixel, no beacon, no cookie)', async () => {
  const worker = await startWorker({ META_GRAPH_URL: sandbox.url, GPC: 'drop' });
  try {
    const s = await page(worker, () => Object.defineProperty(Navigator.prototype, 'globalPrivacyControl', { get: () => true }));
    await s.page.evaluate(() => { window.capi('consent', 'grant'); window.capi('trackCustom', 'AfterGrant'); return fetch('/t/health'); });
    assert.deepEqual(s.beacons, []);
    assert.deepEqual(await s.context.cookies(), []);
    assert.equal(await s.page.evaluate(() => typeof window.__fbqLog), 'undefined', "Meta's pixel never loaded");
    await s.context.close();
  } finally { await worker.stop(); }
});
