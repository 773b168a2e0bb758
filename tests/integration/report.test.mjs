// Proof of delivery in the real runtime: the reconciliation report holds the orders verified
// webhooks reported against what the sandbox (Meta) received, with a reason for every order
// that was not sent; as JSON, as a page, and in the terminal (`capi-edge report`).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { startSandbox, startWorker, eventually, ADMIN_TOKEN, cliPath } from './harness.mjs';

let sandbox, worker;
before(async () => {
  sandbox = await startSandbox();
  worker = await startWorker({ META_GRAPH_URL: sandbox.url, ORDER_WEBHOOK_SECRET: 'order-secret', CUSTOMER_DATA: 'hashed', LEDGER_SHARDS: '4' });
});
after(async () => { await worker?.stop(); sandbox?.stop(); });

const run = Math.random().toString(36).slice(2, 8);
function order(id, fields = {}) {
  const body = JSON.stringify({ order_id: `${run}-${id}`, value: 20, currency: 'EUR', created_at: new Date().toISOString(), customer: { email: `${id}@example.com` }, client_user_agent: 'Mozilla/5.0', client_ip_address: '198.51.100.1', event_source_url: 'https://shop.test/thanks', ...fields });
  return worker.fetch('/t/hooks/order', { method: 'POST', body, headers: { 'x-capi-signature': `sha256=${createHmac('sha256', 'order-secret').update(body).digest('hex')}` } });
}
const admin = (path) => worker.fetch(path, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });

test('the report reconciles webhook orders with what Meta received, and says why for the rest', async () => {
  for (const id of ['a', 'b', 'c']) assert.equal((await order(id)).status, 200);
  assert.equal((await order('a')).status, 200, 'a redelivery is not a new order');
  assert.equal((await (await order('refused', { consent: 'denied' })).json()).reason, 'consent_refused');
  const old = new Date(Date.now() - 9 * 86_400_000).toISOString();
  assert.equal((await (await order('old', { created_at: old })).json()).outcome, 'expired');

  const received = await eventually(async () => {
    const ids = (await sandbox.events()).server.map((e) => e.event_id).filter((id) => id.startsWith(`purchase:${run}-`));
    return ids.length === 3 && ids;
  }, 15_000, 'three Purchases at the sandbox');
  const today = new Date().toISOString().slice(0, 10);
  const report = await eventually(async () => {
    const r = await (await admin('/t/report')).json();
    const d = r.days.find((x) => x.date === today);
    return d && d.sent === received.length && r;
  }, 15_000, 'the report to count the sends');
  const d = report.days.find((x) => x.date === today);
  assert.equal(report.days.length, 7, 'the last 7 days by default');
  assert.deepEqual([d.orders, d.sent, d.expired, d.retrying], [5, 3, 1, 0]);
  assert.deepEqual(d.ignored, { consent_refused: 1 });
  assert.equal(d.accuracy, 4 / 5, '(sent + ignored) / orders');
  assert.equal(report.coverage.Purchase.events, 3);
  assert.equal(report.coverage.Purchase.em, 3, 'coverage counts keys, never values');
  assert.ok(!JSON.stringify(report).includes('example.com'));
  // Email, IP and user agent on every Purchase: 3 + 0.5 + 0.5 of 10 points (core/src/quality.rs).
  assert.equal(report.quality.Purchase.estimated_score, 4);
  assert.equal(report.quality.Purchase.rating, 'ok');
  assert.deepEqual(report.quality.Purchase.missing.map((m) => [m.key, m.share]), [['ph', 0], ['external_id', 0], ['fbc', 0]]);
  assert.match(report.quality.Purchase.missing[0].advice, /checkout/);
  assert.deepEqual(report.incidents, [], 'no incident');

  const page = await admin(`/t/report?from=${today}&to=${today}&format=html`);
  assert.match(page.headers.get('content-type'), /text\/html/);
  const html = await page.text();
  assert.match(html, /<svg[^>]*aria-label="accuracy per day"/);
  assert.match(html, /80\.0 %/);

  const cli = spawnSync(cliPath(), ['report'], { input: JSON.stringify(report), encoding: 'utf8' });
  assert.equal(cli.status, 0, cli.stderr);
  assert.match(cli.stdout, new RegExp(`${today}\\s+5\\s+3\\s+1\\s+0\\s+1\\s+0\\s+0\\s+80\\.0 %\\s+consent_refused 1`));
  assert.match(cli.stdout, /Estimated match quality/);
  assert.match(cli.stdout, /Purchase\s+4\.0 ok\s+ph \(0 %\)\s+orders without it: collect it at checkout/);
  assert.match(html, /Estimated match quality/);

  for (const q of ['?from=2026-13-01', '?from=yesterday', '?from=2026-01-10&to=2026-01-01', '?from=2025-01-01&to=2026-01-01']) {
    const res = await admin(`/t/report${q}`);
    assert.equal(res.status, 400, q);
    assert.equal((await res.json()).error.code, 'invalid_query');
  }
  assert.equal((await worker.fetch('/t/report')).status, 401);
});
