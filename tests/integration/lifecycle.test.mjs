// The whole life of an order in the real runtime, counted at the sandbox: each platform's
// lifecycle replayed in order and out of order (cancel before create, paid twice, refund twice,
// a renewal days later), with PURCHASE_ON, REFUNDS and RENEWALS as a merchant sets them.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, createHash } from 'node:crypto';
import { startSandbox, startWorker, eventually, fixtureText } from './harness.mjs';

const SECRETS = { SHOPIFY_WEBHOOK_SECRET: 'shpss', WOOCOMMERCE_WEBHOOK_SECRET: 'woo', STRIPE_WEBHOOK_SECRET: 'whsec', ORDER_WEBHOOK_SECRET: 'order' };
const sha = (s) => createHash('sha256').update(s).digest('hex');
const hmac = (secret, ...parts) => { const h = createHmac('sha256', secret); parts.forEach((p) => h.update(p)); return h; };
const now = () => Math.floor(Date.now() / 1000);
const iso = (secs) => new Date(secs * 1000).toISOString();
/** A documented fixture as JSON, its timestamps moved to today (Meta takes events of 7 days). */
const fixture = (name) => JSON.parse(fixtureText(name));

let sandbox, refunds, paidOnly;
let seq = 0;
const uniq = () => `${Date.now()}${++seq}`;

const hooks = (worker) => ({
  shopify: (topic, obj) => {
    const body = JSON.stringify(obj);
    return worker.fetch('/t/hooks/shopify', { method: 'POST', body, headers: { 'x-shopify-topic': topic, 'x-shopify-hmac-sha256': hmac('shpss', body).digest('base64') } });
  },
  woo: (topic, obj) => {
    const body = JSON.stringify(obj);
    return worker.fetch('/t/hooks/woocommerce', { method: 'POST', body, headers: { 'x-wc-webhook-topic': topic, 'x-wc-webhook-signature': hmac('woo', body).digest('base64') } });
  },
  stripe: (obj) => {
    const body = JSON.stringify(obj);
    const t = now();
    return worker.fetch('/t/hooks/stripe', { method: 'POST', body, headers: { 'stripe-signature': `t=${t},v1=${hmac('whsec', `${t}.`, body).digest('hex')}` } });
  },
  order: (obj) => {
    const body = JSON.stringify(obj);
    return worker.fetch('/t/hooks/order', { method: 'POST', body, headers: { 'x-capi-signature': `sha256=${hmac('order', body).digest('hex')}` } });
  },
});

const server = async () => (await sandbox.events()).server;
const named = async (name, eventId) => (await server()).filter((e) => e.event_name === name && e.event_id === eventId);
/** Waits for `n` copies of an event at the sandbox, then for a marker order sent after it, and
 * returns every copy: a second copy would have had the marker's time to arrive too. */
async function exactly(h, name, eventId, n = 1) {
  await eventually(async () => (await named(name, eventId)).length >= n, 15_000, `${name} ${eventId}`);
  const marker = `marker-${uniq()}`;
  assert.equal((await h.order({ order_id: marker, value: 1, currency: 'EUR', fbp: 'fb.1.1700000000000.42' })).status, 200);
  await eventually(async () => (await named('Purchase', `purchase:${marker}`)).length === 1, 15_000, 'the marker');
  return named(name, eventId);
}

const shopifyOrder = (id, extra = {}) => {
  const o = fixture('shopify-orders-create.json');
  return { ...o, id, created_at: iso(now() - 60), processed_at: iso(now() - 60), ...extra };
};

before(async () => {
  sandbox = await startSandbox();
  [refunds, paidOnly] = await Promise.all([
    startWorker({ META_GRAPH_URL: sandbox.url, CUSTOMER_DATA: 'hashed', REFUNDS: 'event', RENEWALS: 'purchase', ...SECRETS }),
    startWorker({ META_GRAPH_URL: sandbox.url, CUSTOMER_DATA: 'hashed', PURCHASE_ON: 'paid', RENEWALS: 'event', OFFLINE_ORDERS: 'ignore', ORDER_VALUE: 'net', ...SECRETS }),
  ]);
});
after(async () => { await refunds?.stop(); await paidOnly?.stop(); sandbox?.stop(); });

test('Shopify: created, paid twice, refunded twice, then cancelled → one Purchase, one refund event per refund id', async () => {
  const h = hooks(refunds);
  const id = Number(`8${uniq()}`);
  const order = shopifyOrder(id, { financial_status: 'pending' });
  assert.equal((await (await h.shopify('orders/create', order)).json()).queued, true);
  for (let i = 0; i < 2; i++) {
    const a = await (await h.shopify('orders/paid', { ...order, financial_status: 'paid' })).json();
    assert.equal(a.duplicate, true, 'orders/paid names the same order');
  }
  const [purchase] = await exactly(h, 'Purchase', `purchase:${id}`);
  assert.equal(purchase.custom_data.value, 403);
  // refunds/create names no customer: the refund carries the keys its Purchase was sent with.
  const refund = { ...fixture('shopify-refunds-create.json'), order_id: id, created_at: iso(now() - 30) };
  await eventually(async () => (await refunds.receipts(`purchase:${id}`)).receipts?.some((r) => r.outcome === 'sent'), 10_000, 'the Purchase sent');
  for (let i = 0; i < 2; i++) {
    const a = await (await h.shopify('refunds/create', refund)).json();
    assert.equal(a.purchase, 'delivered');
    assert.equal(a.refunds.length, 1);
  }
  const [r] = await exactly(h, 'OrderRefunded', `refund:${id}:509562969`);
  assert.equal(r.custom_data.value, 41.94, 'the refunded amount, positive');
  assert.equal(r.custom_data.currency, 'USD');
  assert.equal(r.custom_data.order_id, String(id));
  assert.equal(r.user_data.em, sha('jon.snow@example.com'), 'the match keys of the Purchase');
  assert.equal(r.action_source, 'system_generated');
  // Cancelled after delivery: the cancellation's own refund, once; the earlier one not again.
  const cancelled = { ...fixture('shopify-orders-cancelled.json'), id, created_at: order.created_at };
  cancelled.refunds = [...cancelled.refunds, { ...refund }];
  const a = await (await h.shopify('orders/cancelled', cancelled)).json();
  assert.equal(a.purchase, 'delivered');
  assert.notEqual(a.cancelled, true, 'a delivered Purchase is not cancelled');
  const [c] = await exactly(h, 'OrderRefunded', `refund:${id}:509562970`);
  assert.equal(c.custom_data.value, 403);
  assert.equal((await named('OrderRefunded', `refund:${id}:509562969`)).length, 1);
  assert.equal((await named('Purchase', `purchase:${id}`)).length, 1);
});

test('Shopify: a cancellation that arrives before the order holds its Purchase back for good', async () => {
  const h = hooks(refunds);
  const id = Number(`7${uniq()}`);
  const cancelled = { ...fixture('shopify-orders-cancelled.json'), id, created_at: iso(now() - 60) };
  const a = await (await h.shopify('orders/cancelled', cancelled)).json();
  assert.equal(a.cancelled, true);
  assert.deepEqual(a.refunds, undefined, 'no refund event for a Purchase that was never sent');
  for (const topic of ['orders/create', 'orders/paid', 'orders/updated']) {
    const late = await (await h.shopify(topic, shopifyOrder(id))).json();
    assert.equal(late.duplicate, true, `${topic} after the cancellation is not sent`);
  }
  const r = await refunds.receipts(`purchase:${id}`);
  assert.deepEqual([r.receipts[0].outcome, r.receipts[0].reason], ['ignored', 'cancelled']);
  assert.equal((await exactly(h, 'Purchase', 'none-expected', 0)).length, 0);
  assert.equal((await named('Purchase', `purchase:${id}`)).length, 0, 'never sent');
  assert.equal((await named('OrderRefunded', `refund:${id}:509562970`)).length, 0);
});

test('a cancellation while the Purchase retries (Meta down) settles it: the retry sends nothing', async () => {
  const h = hooks(refunds);
  const id = `retry-${uniq()}`;
  await sandbox.faults({ down: true });
  try {
    assert.equal((await (await h.order({ order_id: id, value: 20, currency: 'EUR', customer: { email: 'a@b.co' } })).json()).queued, true);
    await eventually(async () => (await refunds.receipts(`purchase:${id}`)).receipts?.[0]?.outcome === 'retrying', 15_000, 'the Purchase retrying');
    const a = await (await h.order({ order_id: id, value: 20, currency: 'EUR', status: 'cancelled', customer: { email: 'a@b.co' } })).json();
    assert.equal(a.cancelled, true);
  } finally {
    await sandbox.faults({});
  }
  const settled = async () => (await refunds.stats()).reasons?.find((r) => r.outcome === 'duplicate' && r.reason === 'redelivered')?.count ?? 0;
  const before = await settled();
  // The retry message comes back (RETRY_MAX_SECONDS=4), finds the claim settled and is acked.
  await eventually(async () => (await settled()) > before, 20_000, 'the retry settled without sending');
  await exactly(h, 'Purchase', 'none-expected', 0);
  assert.equal((await named('Purchase', `purchase:${id}`)).length, 0);
  const r = await refunds.receipts(`purchase:${id}`);
  assert.deepEqual([r.receipts[0].outcome, r.receipts[0].reason], ['ignored', 'cancelled']);
});

test('test orders are not sent, POS and draft orders are never website events', async () => {
  const h = hooks(refunds);
  const test = `${uniq()}1`;
  const a = await (await h.shopify('orders/create', shopifyOrder(Number(test), { test: true }))).json();
  assert.deepEqual([a.sent, a.outcome, a.reason], [false, 'ignored', 'test_order']);
  const pos = Number(`${uniq()}2`);
  await h.shopify('orders/create', shopifyOrder(pos, { source_name: 'pos' }));
  const draft = Number(`${uniq()}3`);
  await h.shopify('orders/create', shopifyOrder(draft, { source_name: 'shopify_draft_order' }));
  const [p] = await exactly(h, 'Purchase', `purchase:${pos}`);
  assert.equal(p.action_source, 'physical_store');
  assert.equal(p.event_source_url, undefined, 'no made-up page URL');
  const [d] = await exactly(h, 'Purchase', `purchase:${draft}`);
  assert.equal(d.action_source, 'system_generated');
  assert.equal((await named('Purchase', `purchase:${test}`)).length, 0);
  // OFFLINE_ORDERS=ignore: settled with a receipt.
  const ignored = await (await hooks(paidOnly).shopify('orders/paid', shopifyOrder(Number(`${uniq()}4`), { source_name: 'pos' }))).json();
  assert.deepEqual([ignored.sent, ignored.reason], [false, 'offline_order']);
});

test('PURCHASE_ON=paid: a placed order waits for its payment; ORDER_VALUE=net leaves out shipping and tax', async () => {
  const h = hooks(paidOnly);
  const id = Number(`6${uniq()}`);
  const placed = shopifyOrder(id, { financial_status: 'pending', total_tax: '13.00', total_shipping_price_set: { shop_money: { amount: '10.00', currency_code: 'USD' } } });
  assert.equal((await (await h.shopify('orders/create', placed)).json()).ignored, 'awaiting_payment');
  assert.equal((await (await h.shopify('orders/paid', { ...placed, financial_status: 'paid' })).json()).queued, true);
  const [p] = await exactly(h, 'Purchase', `purchase:${id}`);
  assert.equal(p.custom_data.value, 380);
  // WooCommerce: on-hold is placed, processing is paid.
  const woo = { ...fixture('woocommerce-order.json'), id: Number(`5${uniq()}`), date_created_gmt: iso(now() - 60).slice(0, 19) };
  assert.equal((await (await h.woo('order.created', { ...woo, status: 'on-hold' })).json()).ignored, 'awaiting_payment');
  assert.equal((await (await h.woo('order.updated', woo)).json()).queued, true);
  await exactly(h, 'Purchase', `purchase:${woo.id}`);
});

test('WooCommerce: a failed payment blocks nothing, the same order paid afterwards is one Purchase', async () => {
  const h = hooks(refunds);
  const woo = { ...fixture('woocommerce-order.json'), id: Number(`3${uniq()}`), date_created_gmt: iso(now() - 60).slice(0, 19) };
  const failed = await (await h.woo('order.updated', { ...woo, status: 'failed' })).json();
  assert.equal(failed.purchase, 'unknown', 'nothing to hold back, nothing written');
  assert.notEqual(failed.cancelled, true);
  assert.equal((await (await h.woo('order.updated', woo)).json()).queued, true, 'paid on the second try');
  await exactly(h, 'Purchase', `purchase:${woo.id}`);
});

test('WooCommerce: a Purchase waiting while Meta is down is held back by a failed payment, and sent once the order is paid', async () => {
  const h = hooks(refunds);
  const woo = { ...fixture('woocommerce-order.json'), id: Number(`5${uniq()}`), date_created_gmt: iso(now() - 60).slice(0, 19) };
  const onHold = { ...woo, status: 'on-hold' };
  await sandbox.faults({ down: true });
  try {
    assert.equal((await (await h.woo('order.created', onHold)).json()).queued, true);
    await eventually(async () => (await refunds.receipts(`purchase:${woo.id}`)).receipts?.[0]?.outcome === 'retrying', 15_000, 'the Purchase retrying');
    const failed = await (await h.woo('order.updated', { ...woo, status: 'failed' })).json();
    assert.equal(failed.cancelled, true, 'the waiting Purchase is held back');
    // A redelivery of the placed order, from before the payment, does not bring it back.
    assert.equal((await (await h.woo('order.created', onHold)).json()).duplicate, true);
  } finally {
    await sandbox.faults({});
  }
  // The buyer pays the same order: its paid update is sent, once, and the held-back copy's
  // retry sends nothing.
  assert.equal((await (await h.woo('order.updated', woo)).json()).queued, true);
  await exactly(h, 'Purchase', `purchase:${woo.id}`);
  await eventually(async () => (await refunds.receipts(`purchase:${woo.id}`)).receipts?.[0]?.outcome === 'sent', 15_000, 'the receipt says sent');
});

test('WooCommerce: refunded after delivery sends one refund event, however often the update comes', async () => {
  const h = hooks(refunds);
  const woo = { ...fixture('woocommerce-order.json'), id: Number(`4${uniq()}`), date_created_gmt: iso(now() - 60).slice(0, 19) };
  await h.woo('order.created', woo);
  await exactly(h, 'Purchase', `purchase:${woo.id}`);
  await eventually(async () => (await refunds.receipts(`purchase:${woo.id}`)).receipts?.some((r) => r.outcome === 'sent'), 10_000, 'sent');
  const refunded = { ...fixture('woocommerce-order-refunded.json'), id: woo.id, date_created_gmt: woo.date_created_gmt };
  for (let i = 0; i < 3; i++) assert.equal((await h.woo('order.updated', refunded)).status, 200);
  const [r] = await exactly(h, 'OrderRefunded', `refund:${woo.id}:728`);
  assert.equal(r.custom_data.value, 29.35);
  assert.equal(r.custom_data.currency, 'EUR');
});

test('Stripe: the session and its payment intent are one Purchase; a partial refund is one event', async () => {
  const h = hooks(refunds);
  const orderId = `order-${uniq()}`;
  const session = fixture('stripe-checkout-session-completed.json');
  session.data.object = { ...session.data.object, client_reference_id: orderId, created: now() - 60 };
  const pi = fixture('stripe-payment-intent-succeeded.json');
  pi.data.object = { ...pi.data.object, metadata: { order_id: orderId }, created: now() - 60 };
  // The payment intent first, as Stripe often sends it, then the session twice.
  assert.equal((await (await h.stripe(pi)).json()).queued, true);
  assert.equal((await (await h.stripe(session)).json()).duplicate, true);
  assert.equal((await (await h.stripe(session)).json()).duplicate, true);
  await exactly(h, 'Purchase', `purchase:${orderId}`);
  await eventually(async () => (await refunds.receipts(`purchase:${orderId}`)).receipts?.some((r) => r.outcome === 'sent'), 10_000, 'sent');
  const refund = fixture('stripe-charge-refunded.json');
  refund.data.object = { ...refund.data.object, metadata: { order_id: orderId }, created: now() - 30 };
  for (let i = 0; i < 2; i++) assert.equal((await h.stripe(refund)).status, 200);
  const [r] = await exactly(h, 'OrderRefunded', `refund:${orderId}:ch_3QGxZA2eZvKYlo2C1abcdEFG@1500`);
  assert.equal(r.custom_data.value, 1500, 'JPY has no minor unit');
  // A test-mode event on a live tenant is not sent.
  const testMode = { ...session, livemode: false };
  testMode.data = { object: { ...session.data.object, client_reference_id: `${orderId}-test` } };
  assert.equal((await (await h.stripe(testMode)).json()).reason, 'test_order');
  // An expired session owns no Purchase: the same order paid in a new session is sent.
  const expired = fixture('stripe-checkout-session-expired.json');
  expired.data.object.client_reference_id = `${orderId}-again`;
  assert.equal((await (await h.stripe(expired)).json()).ignored, 'session_expired');
  const again = { ...session, data: { object: { ...session.data.object, id: 'cs_test_again', client_reference_id: `${orderId}-again` } } };
  assert.equal((await (await h.stripe(again)).json()).queued, true);
  await exactly(h, 'Purchase', `purchase:${orderId}-again`);
});

test('a copy of an order refused for what it lacked blocks none of the copies that have it', async () => {
  const h = hooks(refunds);
  const orderId = `lacks-${uniq()}`;
  // A backend's first copy carries no customer and no browser id: Meta would refuse it.
  const bare = { order_id: orderId, value: 20, currency: 'EUR' };
  const first = await (await h.order(bare)).json();
  assert.deepEqual([first.sent, first.outcome, first.reason], [false, 'rejected', 'user_data_missing']);
  assert.equal((await (await h.order(bare)).json()).outcome, 'rejected', 'its redelivery is refused again');
  // The next copy has them: it is the one sent, once, however often it comes.
  const full = { ...bare, fbp: 'fb.1.1700000000000.77', customer: { email: 'lacks@example.com' } };
  assert.equal((await (await h.order(full)).json()).queued, true);
  assert.equal((await (await h.order(full)).json()).duplicate, true);
  const [p] = await exactly(h, 'Purchase', `purchase:${orderId}`);
  assert.equal([].concat(p.user_data.em)[0], sha('lacks@example.com'));
  await eventually(async () => (await refunds.receipts(`purchase:${orderId}`)).receipts?.some((r) => r.outcome === 'sent'), 10_000, 'sent');
  // A staging backend's test order with a live order's number does not hold the live one back.
  const shared = `shared-${uniq()}`;
  const staging = await (await h.order({ ...full, order_id: shared, test: true })).json();
  assert.deepEqual([staging.sent, staging.reason], [false, 'test_order']);
  assert.equal((await (await h.order({ ...full, order_id: shared })).json()).queued, true);
  await exactly(h, 'Purchase', `purchase:${shared}`);
});

test('Stripe subscriptions: the first invoice is the Purchase, a renewal three days later has an id of its own', async () => {
  const sub = `sub_${uniq()}`;
  const first = fixture('stripe-invoice-paid.json');
  first.data.object = { ...first.data.object, subscription: sub, created: now() - 600 };
  const renewal = fixture('stripe-invoice-paid-renewal.json');
  renewal.data.object = { ...renewal.data.object, id: `in_${uniq()}`, subscription: sub, created: now() - 60 };
  // RENEWALS=purchase: a Purchase per renewal, apart from the first order's.
  const h = hooks(refunds);
  for (let i = 0; i < 2; i++) await h.stripe(first);
  for (let i = 0; i < 2; i++) await h.stripe(renewal);
  const [p] = await exactly(h, 'Purchase', `purchase:${sub}`);
  assert.equal(p.custom_data.value, 12);
  assert.equal(p.custom_data.subscription_id, sub);
  const [r] = await exactly(h, 'Purchase', `renewal:${renewal.data.object.id}`);
  assert.equal(r.custom_data.subscription_id, sub);
  assert.equal(r.action_source, 'system_generated');
  // RENEWALS=event: a SubscriptionRenewed instead; a free first invoice is a trial start.
  const g = hooks(paidOnly);
  const renewal2 = { ...renewal, data: { object: { ...renewal.data.object, id: `in_${uniq()}` } } };
  await g.stripe(renewal2);
  await exactly(g, 'SubscriptionRenewed', `renewal:${renewal2.data.object.id}`);
  const trialSub = `sub_${uniq()}`;
  await g.stripe({ ...first, data: { object: { ...first.data.object, subscription: trialSub, amount_paid: 0 } } });
  await exactly(g, 'StartTrial', `trial:${trialSub}`);
  // The trial ends: Stripe bills it as a cycle. That first paid invoice is the subscription's
  // Purchase (once, redelivered or not), not a renewal; the next cycle is a renewal.
  const converts = { ...renewal, data: { object: { ...renewal.data.object, id: `in_${uniq()}`, subscription: trialSub } } };
  for (let i = 0; i < 2; i++) assert.equal((await g.stripe(converts)).status, 200);
  const [paid] = await exactly(g, 'Purchase', `purchase:${trialSub}`);
  assert.equal(paid.custom_data.value, renewal.data.object.amount_paid / 100);
  assert.equal((await named('SubscriptionRenewed', `renewal:${converts.data.object.id}`)).length, 0, 'not also a renewal');
  const next = { ...renewal, data: { object: { ...renewal.data.object, id: `in_${uniq()}`, subscription: trialSub } } };
  await g.stripe(next);
  await exactly(g, 'SubscriptionRenewed', `renewal:${next.data.object.id}`);
  assert.equal((await named('Purchase', `purchase:${trialSub}`)).length, 1);
  // The invoice's mark is no event: a receipt lookup does not show it.
  const shown = (await paidOnly.receipts(`renewal:${converts.data.object.id}`)).receipts ?? [];
  assert.deepEqual(shown.map((r) => r.event_name), []);
  // A subscription whose trial start this Worker never saw: its invoices stay renewals.
  const unseen = { ...renewal, data: { object: { ...renewal.data.object, id: `in_${uniq()}`, subscription: `sub_${uniq()}` } } };
  await g.stripe(unseen);
  await exactly(g, 'SubscriptionRenewed', `renewal:${unseen.data.object.id}`);
  assert.equal((await named('Purchase', `purchase:${unseen.data.object.subscription}`)).length, 0);
});
