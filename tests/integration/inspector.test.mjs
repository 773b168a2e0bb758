// The sandbox's event inspector in headless Chromium, as a developer uses it after `make dev`:
// a browser + server pair (the server copy through the real Worker's /t/e), a server-only event
// and one whose browser copy has another id, a request Meta would refuse, and events whose name
// and custom_data are markup. Asserts what one sees: every copy listed newest first with its
// status and why, a click shows the copy as received (hashed em with its field, pixel, API
// version, the answer), the filters change the rows, and no event's text runs as markup.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { startSandbox, startWorker, eventually, PIXEL_ID, TOKEN, launchChromium } from './harness.mjs';

const sha = (s) => createHash('sha256').update(s).digest('hex');
const UA = 'Mozilla/5.0 (X11; Linux x86_64) capi-edge-inspector-test';
const PAGE_URL = 'https://shop.test/p/mug';
const OTHER_PIXEL = '555000111';
const XSS_NAME = '<img src=x onerror="window.__xss=1">';
const XSS_NOTE = '</pre><script>window.__xss=2</script><b id="bold">bold</b>';

let sandbox, worker, browser;
const ids = {};

before(async () => {
  sandbox = await startSandbox();
  worker = await startWorker({ META_GRAPH_URL: sandbox.url, CUSTOMER_DATA: 'hashed' });
  browser = await launchChromium();
});
after(async () => {
  await browser?.close();
  await worker?.stop();
  sandbox?.stop();
});

const post = (path, body) => fetch(sandbox.url + path, { method: 'POST', body: JSON.stringify(body) });
/** A copy from the demo page's pixel stand-in, as fbevents.js posts it. */
const browserCopy = (event_name, event_id, pixel_ids = [PIXEL_ID], params = {}) =>
  post('/_sandbox/browser', { method: 'track', event_name, event_id, params, pixel_ids, url: PAGE_URL });
/** A Conversions API request straight to the sandbox, as any server would send it. */
const graph = (pixel, data, extra = {}) => post(`/v26.0/${pixel}/events`, { access_token: TOKEN, data, ...extra });
const serverEvent = (event_name, event_id, more = {}) => ({
  event_name, event_id, event_time: Math.floor(Date.now() / 1000), action_source: 'website', event_source_url: PAGE_URL,
  user_data: { em: sha('lead@example.com'), client_user_agent: UA }, ...more,
});
const pause = (ms) => new Promise((r) => setTimeout(r, ms));

test('the sandbox records each copy with an id, its pixel, version, test code and answer', { timeout: 60_000 }, async () => {
  // 1. A pair: the pixel's copy, then the Worker's copy of the same beacon.
  ids.pair = `atc-${Date.now()}`;
  assert.equal((await browserCopy('AddToCart', ids.pair, [PIXEL_ID], { value: 19.9, currency: 'EUR' })).status, 200);
  await pause(20);
  const beacon = await worker.fetch('/t/e', {
    method: 'POST',
    headers: { 'content-type': 'text/plain;charset=UTF-8', origin: new URL(worker.url).origin, 'user-agent': UA, 'cf-connecting-ip': '203.0.113.7' },
    body: JSON.stringify({ event_name: 'AddToCart', event_id: ids.pair, event_source_url: PAGE_URL, event_time_ms: Date.now(),
      custom_data: { value: '19.90', currency: 'eur' }, user_data: { em: ' Jane.Doe@Example.com ' } }),
  });
  assert.equal(beacon.status, 204);
  await eventually(async () => (await sandbox.events()).server.some((e) => e.event_id === ids.pair), 10_000, 'the Worker relayed the beacon');
  // 2. A server-only Lead, and a browser Lead a moment later whose eventID differs.
  assert.equal((await graph(PIXEL_ID, [serverEvent('Lead', 'lead-1')], { test_event_code: 'TEST999' })).status, 200);
  await pause(20);
  await browserCopy('Lead', 'lead-1-browser');
  await pause(20);
  // 3. A request Meta would refuse: a Purchase without currency.
  const refused = await graph(PIXEL_ID, [serverEvent('Purchase', 'order-9', { custom_data: { value: 10 } })]);
  assert.equal(refused.status, 400);
  await pause(20);
  // 4. Markup as an event name and in custom_data, to another pixel; and its browser copy.
  assert.equal((await graph(OTHER_PIXEL, [serverEvent(XSS_NAME, 'xss-1', { custom_data: { note: XSS_NOTE } })])).status, 200);
  await pause(20);
  await browserCopy(XSS_NAME, 'xss-1', [PIXEL_ID]);

  const v = await (await fetch(`${sandbox.url}/_sandbox/inspect`)).json();
  assert.equal(v.matching, 7, JSON.stringify(v.events.map((e) => [e.id, e.event_name])));
  assert.deepEqual(v.events.map((e) => e.event_name), [XSS_NAME, XSS_NAME, 'Purchase', 'Lead', 'Lead', 'AddToCart', 'AddToCart'], 'newest first');
  const find = (copy, name) => v.events.find((e) => e.copy === copy && e.event_name === name);
  const pairServer = find('server', 'AddToCart');
  ids.pairServer = pairServer.id;
  ids.pairKeys = pairServer.match_keys.join(', ');
  ids.pairBrowser = find('browser', 'AddToCart').id;
  ids.leadServer = find('server', 'Lead').id;
  ids.rejected = find('rejected', 'Purchase').id;
  ids.xss = find('server', XSS_NAME).id;
  assert.equal(pairServer.status, 'deduplicated');
  assert.deepEqual(pairServer.paired_with, [ids.pairBrowser]);
  assert.equal(pairServer.pixel_id, PIXEL_ID);
  assert.equal(pairServer.api_version, 'v26.0');
  assert.ok(pairServer.match_keys.includes('em') && pairServer.estimate.keys.includes('em'), JSON.stringify(pairServer));
  assert.ok(pairServer.estimate.score > 0 && ['poor', 'ok', 'good', 'great'].includes(pairServer.estimate.rating));
  assert.match(v.estimate_note, /estimate/i);
  assert.match(v.estimate_note, /not Meta's Event Match Quality/);
  assert.equal(find('browser', 'AddToCart').estimate, null, 'no estimate for a copy without user_data');

  const lead = find('server', 'Lead');
  assert.equal(lead.status, 'server_only');
  assert.match(lead.why, /^ids differ: .*"lead-1-browser"/);
  assert.equal(lead.test_event_code, 'TEST999');
  assert.match(find('browser', 'Lead').why, /^ids differ: .*"lead-1"/);
  const rejected = find('rejected', 'Purchase');
  assert.equal(rejected.status, 'rejected');
  assert.match(rejected.why, /Purchase events require custom_data.value and custom_data.currency/);
  assert.equal(find('browser', XSS_NAME).status, 'browser_only');
  assert.match(find('browser', XSS_NAME).why, /^pixels differ: the server copy went to pixel 555000111/);

  // One copy in full: the hashed em with its field, the request, the answer.
  const d = await (await fetch(`${sandbox.url}/_sandbox/event/${ids.pairServer}`)).json();
  const em = d.user_data.find((u) => u.key === 'em');
  assert.deepEqual([em.field, em.value, em.hashed], ['email', sha('jane.doe@example.com'), true]);
  assert.equal(d.request.pixel_id, PIXEL_ID);
  assert.equal(d.request.api_version, 'v26.0');
  assert.equal(d.request.token_in_url, false);
  assert.equal(d.answer.status, 200);
  assert.equal(d.answer.body.events_received, 1);
  assert.equal(d.answer.body.fbtrace_id, d.request.fbtrace_id);
  assert.equal(d.action_source, 'website');
  assert.deepEqual(d.custom_data, { value: 19.9, currency: 'EUR' });
  assert.equal(d.payload._sandbox, undefined, 'the payload is the event as received');
  const r = await (await fetch(`${sandbox.url}/_sandbox/event/${ids.rejected}`)).json();
  assert.equal(r.answer.status, 400);
  assert.equal(r.answer.body.error.code, 100);
  assert.ok(!JSON.stringify(r).includes(TOKEN), 'the access token is never kept');
  assert.equal((await fetch(`${sandbox.url}/_sandbox/event/nope`)).status, 404);

  // What other tests read is unchanged.
  const events = await sandbox.events();
  assert.equal(events.summary.server_events, 3);
  assert.equal(events.summary.rejected_requests, 1);
  assert.equal(events.pairs.find((p) => p.event_id === ids.pair).status, 'deduplicated');
});

test('the inspector page lists the copies, shows one as received, and filters', { timeout: 60_000 }, async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`${sandbox.url}/_sandbox/`);
  const rows = () => page.$$eval('#rows tr', (trs) => trs.map((tr) => ({ id: tr.dataset.id, status: tr.dataset.status, name: tr.dataset.name, text: tr.textContent })));
  await page.waitForFunction(() => document.querySelectorAll('#rows tr').length === 7, null, { timeout: 10_000 });
  const all = await rows();
  assert.equal(all[0].name, XSS_NAME, 'newest first');
  const row = (id) => all.find((x) => x.id === id);
  assert.match(row(ids.pairServer).text, /deduplicated/);
  assert.ok(row(ids.pairServer).text.includes(ids.pairKeys), `${ids.pairKeys} in ${row(ids.pairServer).text}`);
  assert.match(row(ids.pairServer).text, /\d\.\d (poor|ok|good|great)/, 'the estimate is shown');
  assert.match(row(ids.leadServer).text, /server only.*ids differ/);
  assert.match(row(ids.rejected).text, /rejected.*Purchase events require/);
  assert.match(await page.textContent('body'), /Match quality here is an estimate/);

  // A click shows the copy as received.
  await page.click(`#rows tr[data-id="${ids.pairServer}"]`);
  await page.waitForFunction((id) => document.getElementById('d-title').textContent.includes(id), ids.pairServer, { timeout: 5_000 });
  const em = await page.textContent('#d-user-data tr[data-key="em"]');
  assert.match(em, /email/);
  assert.ok(em.includes(sha('jane.doe@example.com')), em);
  assert.match(em, /SHA-256/);
  const request = await page.textContent('#d-request');
  assert.ok(request.includes(PIXEL_ID), request);
  assert.match(request, /API versionv26\.0/);
  assert.match(await page.textContent('#d-answer'), /"events_received": 1/);
  assert.match(await page.textContent('#d-estimate'), /^Estimate: \d+\.\d \/ 10 .*not Meta's Event Match Quality/);
  assert.match(await page.textContent('#d-custom-data'), /"currency": "EUR"/);
  assert.match(await page.textContent('#d-event'), /action_sourcewebsite/);

  await page.click(`#rows tr[data-id="${ids.pairBrowser}"]`);
  await page.waitForFunction((id) => document.getElementById('d-title').textContent.includes(id), ids.pairBrowser, { timeout: 5_000 });
  assert.match(await page.textContent('#d-status'), new RegExp(`pairs with ${ids.pairServer}`));
  assert.match(await page.textContent('#d-custom-data'), /"value": 19.9/);

  await page.click(`#rows tr[data-id="${ids.rejected}"]`);
  await page.waitForFunction((id) => document.getElementById('d-title').textContent.includes(id), ids.rejected, { timeout: 5_000 });
  const answer = await page.textContent('#d-answer');
  assert.match(answer, /"status": 400/);
  assert.match(answer, /"code": 100/);
  assert.match(answer, /"fbtrace_id": "SbX/);

  // Filters: by status, by name, by pixel — each changes the rows.
  const shown = async (n, want = {}) => {
    await page.waitForFunction(({ n, want }) => {
      const trs = [...document.querySelectorAll('#rows tr')];
      return trs.length === n && trs.every((tr) => Object.entries(want).every(([k, v]) => tr.dataset[k] === v));
    }, { n, want }, { timeout: 5_000 });
    return rows();
  };
  await page.selectOption('#f-status', 'rejected');
  assert.deepEqual((await shown(1, { status: 'rejected' })).map((x) => x.id), [ids.rejected]);
  await page.selectOption('#f-status', 'deduplicated');
  assert.deepEqual((await shown(2, { status: 'deduplicated' })).map((x) => x.name), ['AddToCart', 'AddToCart']);
  await page.selectOption('#f-status', '');
  await shown(7);
  await page.selectOption('#f-name', 'Lead');
  const leads = await shown(2, { name: 'Lead' });
  assert.deepEqual(leads.map((x) => x.status).sort(), ['browser_only', 'server_only']);
  await page.selectOption('#f-name', '');
  await shown(7);
  await page.selectOption('#f-pixel', OTHER_PIXEL);
  assert.deepEqual((await shown(1, { pixel: OTHER_PIXEL })).map((x) => x.id), [ids.xss]);
  assert.match(await page.textContent('#count'), /^1 of 7 copies/);
  await page.selectOption('#f-pixel', '');
  await shown(7);
  await context.close();
});

test('markup in an event name or custom_data is shown as text, never run', { timeout: 60_000 }, async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(`${sandbox.url}/_sandbox/`);
  await page.waitForFunction(() => document.querySelectorAll('#rows tr').length === 7, null, { timeout: 10_000 });
  const xssRow = page.locator(`#rows tr[data-id="${ids.xss}"]`);
  assert.ok((await xssRow.textContent()).includes(XSS_NAME), 'the name is shown literally');
  const options = await page.$$eval('#f-name option', (os) => os.map((o) => o.textContent));
  assert.ok(options.includes(XSS_NAME), options.join(' | '));
  await xssRow.click();
  await page.waitForFunction((id) => document.getElementById('d-title').textContent.includes(id), ids.xss, { timeout: 5_000 });
  assert.ok((await page.textContent('#d-custom-data')).includes(JSON.stringify(XSS_NOTE).slice(1, -1)), 'custom_data as JSON text');
  assert.ok((await page.textContent('#d-title')).startsWith(XSS_NAME));
  // Let any injected handler fire, then look for its traces.
  await pause(300);
  assert.equal(await page.evaluate(() => window.__xss), undefined, 'no injected script ran');
  assert.equal(await page.locator('#rows img, #detail img, #detail script, #bold, select img').count(), 0, 'no injected element');
  assert.deepEqual(errors, []);
  await context.close();
});
