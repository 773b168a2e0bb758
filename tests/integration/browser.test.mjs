// The whole path in headless Chromium: demo page → shim → fbq (stand-in pixel) + beacon →
// Worker (workerd) → sandbox. Asserts what a merchant would check in Events Manager.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createHmac } from 'node:crypto';
import { startSandbox, startWorker, eventually, PIXEL_ID, HASHED_KEYS, isSha256, launchChromium } from './harness.mjs';

let sandbox, worker, browser;

before(async () => {
  sandbox = await startSandbox();
  worker = await startWorker({ META_GRAPH_URL: sandbox.url, DEMO_STOREFRONT: 'on', ORDER_WEBHOOK_SECRET: 'order-secret', CUSTOMER_DATA: 'hashed', TEST_EVENT_CODES: 'TEST777' });
  browser = await launchChromium();
});
after(async () => {
  await browser?.close();
  await worker?.stop();
  sandbox?.stop();
});

const serverCopy = async (name, id) => (await sandbox.events()).server.find((e) => e.event_name === name && e.event_id === id);

test('PageView and AddToCart arrive twice with one event_id and deduplicate', async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`${worker.url}/?fbclid=IwAR_browser-Test_1`);

  // The automatic PageView went to fbq with an eventID …
  const pageView = await eventually(() => page.evaluate(() => (window.__fbqCalls || []).find((c) => c.event_name === 'PageView')), 10_000, 'fbq PageView');
  assert.match(pageView.event_id, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/, 'UUIDv7 event id');
  assert.deepEqual(pageView.pixel_ids, [PIXEL_ID], 'the shim installed fbq and initialised the pixel');
  // … and the Worker relayed the same event to the Conversions API.
  const pvServer = await eventually(() => serverCopy('PageView', pageView.event_id), 10_000, 'server PageView');

  const cookies = Object.fromEntries((await context.cookies()).map((c) => [c.name, c.value]));
  assert.match(cookies._fbp, /^fb\.\d\.\d{13}\.\d+$/, '_fbp minted by the shim');
  assert.match(cookies._fbc, /^fb\.\d\.\d{13}\.IwAR_browser-Test_1$/, '_fbc from fbclid, click id unaltered');
  assert.equal(pvServer.user_data.fbp, cookies._fbp, 'server and pixel see one _fbp');
  assert.equal(pvServer.user_data.fbc, cookies._fbc);
  assert.equal(pvServer.user_data.client_user_agent, await page.evaluate(() => navigator.userAgent));
  assert.equal(pvServer.event_source_url, page.url());
  assert.equal(pvServer.action_source, 'website');

  await page.click('button[data-sku="teapot"]');
  const add = await eventually(() => page.evaluate(() => (window.__fbqCalls || []).find((c) => c.event_name === 'AddToCart')), 10_000, 'fbq AddToCart');
  assert.deepEqual(add.params, { value: 39.9, currency: 'EUR', content_ids: ['teapot'], content_type: 'product' });
  const addServer = await eventually(() => serverCopy('AddToCart', add.event_id), 10_000, 'server AddToCart');
  assert.deepEqual(addServer.custom_data, { value: 39.9, currency: 'EUR', content_ids: ['teapot'], content_type: 'product' });
  for (const k of HASHED_KEYS) if (k in addServer.user_data) assert.ok(isSha256(addServer.user_data[k]), `${k} hashed`);

  const pairs = await eventually(async () => {
    const v = await sandbox.events();
    const p = v.pairs.filter((x) => [pageView.event_id, add.event_id].includes(x.event_id));
    return p.length === 2 && p.every((x) => x.status === 'deduplicated') && p;
  }, 10_000, 'both pairs deduplicated');
  assert.equal(pairs.length, 2);
  await context.close();
});

test('commands given before the shim loads are queued, not lost', async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  // The demo page defines the queue stub before the async script tag; call it at once.
  await page.addInitScript(() => {
    document.addEventListener('DOMContentLoaded', () => window.capi('trackCustom', 'EarlyBird', { step: 1 }));
  });
  await page.goto(`${worker.url}/`);
  const early = await eventually(() => page.evaluate(() => (window.__fbqCalls || []).find((c) => c.event_name === 'EarlyBird')), 10_000, 'queued command');
  assert.equal(early.method, 'trackCustom');
  await eventually(() => serverCopy('EarlyBird', early.event_id), 10_000, 'server copy of the queued command');
  await context.close();
});

test('the thank-you Purchase and the order webhook share an event_id and deduplicate', async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`${worker.url}/checkout`);
  await page.click('#pay');
  await page.waitForURL(/thank-you/);
  const orderId = new URL(page.url()).searchParams.get('order');
  const purchase = await eventually(() => page.evaluate(() => (window.__fbqCalls || []).find((c) => c.event_name === 'Purchase')), 10_000, 'fbq Purchase');
  assert.equal(purchase.event_id, `purchase:${orderId}`, 'derived from the order id');

  // Signed sources win: with an order webhook configured, the server copy comes from the
  // shop's signed order (its value and match keys), the thank-you beacon only feeds the pixel.
  const body = JSON.stringify({ order_id: orderId, value: 39.9, currency: 'EUR', customer: { email: 'buyer@example.com' }, client_user_agent: 'Mozilla/5.0' });
  const send = () => fetch(`${worker.url}/t/hooks/order`, { method: 'POST', body, headers: { 'x-capi-signature': `sha256=${createHmac('sha256', 'order-secret').update(body).digest('hex')}` } });
  const hook = await send();
  assert.equal(hook.status, 200);
  const answer = await hook.json();
  assert.equal(answer.event_id, purchase.event_id);
  assert.equal(answer.duplicate, undefined, 'the thank-you beacon did not pre-empt the webhook');
  const server = await eventually(() => serverCopy('Purchase', purchase.event_id), 10_000, 'server Purchase');
  assert.equal(server.custom_data.currency, 'EUR');
  assert.equal(server.custom_data.value, 39.9);
  assert.equal(server.user_data.em, createHash('sha256').update('buyer@example.com').digest('hex'));
  // A redelivery is answered duplicate by the ledger: one server copy.
  assert.equal((await (await send()).json()).duplicate, true);
  assert.equal((await sandbox.events()).server.filter((e) => e.event_id === purchase.event_id).length, 1);

  const sb = await context.newPage();
  await sb.goto(`${sandbox.url}/`);
  const row = sb.locator('tr', { hasText: purchase.event_id });
  await row.waitFor({ timeout: 5_000 });
  assert.match(await row.textContent(), /deduplicated/);
  await context.close();
});

test('on Shopify the shim copies _fbp/_fbc into hidden cart attributes, once per change', async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  const updates = [];
  // A Shopify theme page with the tag, and Shopify's Ajax cart endpoint, emulated on the Worker's origin.
  await page.route(`${worker.url}/products/mug*`, (route) => route.fulfill({
    contentType: 'text/html',
    body: `<!doctype html><script src="/t/p.js" data-pixel="${PIXEL_ID}" data-fbq="off" data-shopify-cart="on" async></script>`,
  }));
  await page.route(`${worker.url}/cart/update.js`, (route) => {
    updates.push(route.request().postDataJSON());
    return route.fulfill({ contentType: 'application/json', body: '{}' });
  });
  await page.goto(`${worker.url}/products/mug?fbclid=IwAR_cart-1`);
  await eventually(() => updates.length === 1, 10_000, 'cart update');
  const cookies = Object.fromEntries((await context.cookies()).map((c) => [c.name, c.value]));
  assert.deepEqual(updates[0], { attributes: { _fbp: cookies._fbp, _fbc: cookies._fbc } });
  assert.match(cookies._fbc, /\.IwAR_cart-1$/);
  await page.goto(`${worker.url}/products/mug`);
  await page.waitForFunction(() => window.capi && window.capi.loaded);
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(updates.length, 1, 'unchanged values are not posted again');
  await context.close();
});

test('the Shopify checkout custom pixel reports checkout events; its Purchase dedupes with the order webhook', async () => {
  const { readFileSync } = await import('node:fs');
  const { ROOT } = await import('./harness.mjs');
  const snippet = readFileSync(`${ROOT}pixel-shim/shopify-custom-pixel.js`, 'utf8')
    .replace("const CAPI_ENDPOINT = 'https://shop.example.com/t/e';", `const CAPI_ENDPOINT = '${worker.url}/t/e';`)
    // As this Worker is configured (CUSTOMER_DATA = hashed).
    .replace("const CUSTOMER_DATA = 'off';", "const CUSTOMER_DATA = 'hashed';");
  const context = await browser.newContext();
  await context.addCookies([{ name: '_fbp', value: 'fb.1.1763900000000.42424242', url: worker.url }]);
  const page = await context.newPage();
  // A stand-in for Shopify's custom-pixel sandbox API: analytics.subscribe and browser.cookie.
  await page.route(`${worker.url}/checkouts/cn/abc`, (route) => route.fulfill({
    contentType: 'text/html',
    body: `<!doctype html><script>
      const handlers = {};
      window.analytics = { subscribe: (name, fn) => { handlers[name] = fn; } };
      window.browser = { cookie: { get: async (n) => (document.cookie.match('(?:^|; )' + n + '=([^;]+)') || [])[1] || '' } };
      window.fire = (name, data) => handlers[name]({ data, context: { document: { location: { href: location.href } } } });
      window.init = { customerPrivacy: { marketingAllowed: true } };
      window.api = { customerPrivacy: { subscribe: () => {} } };
    </script><script>${snippet}</script>`,
  }));
  await page.goto(`${worker.url}/checkouts/cn/abc`);
  const checkout = {
    email: 'Checkout.Buyer@Example.com', phone: '+44 7700 900123', currencyCode: 'GBP', totalPrice: { amount: 59.5 },
    lineItems: [{ quantity: 2, variant: { id: '808950810' } }],
    billingAddress: { firstName: 'Ada', lastName: 'Lovelace', city: 'London', zip: 'SW1A 1AA', countryCode: 'GB' },
    order: { id: '9876543210' },
  };
  const purchaseBeacon = page.waitForRequest((r) => r.url().endsWith('/t/e') && (r.postData() || '').includes('"Purchase"'));
  await page.evaluate((c) => { window.fire('checkout_started', { checkout: c }); window.fire('checkout_completed', { checkout: c }); }, checkout);
  const sent = JSON.parse((await purchaseBeacon).postData());
  assert.equal(sent.event_id, 'purchase:9876543210', 'the id the order webhook derives');
  assert.equal(sent.fbp, 'fb.1.1763900000000.42424242', '_fbp read through browser.cookie');
  assert.deepEqual(sent.custom_data, { value: 59.5, currency: 'GBP', content_ids: ['808950810'], content_type: 'product', num_items: 2, order_id: '9876543210' });
  const started = await eventually(async () => (await sandbox.events()).server.find((e) => e.event_name === 'InitiateCheckout' && e.event_source_url.includes('/checkouts/cn/abc')), 10_000, 'InitiateCheckout');
  assert.match(started.event_id, /^[0-9a-f-]{36}$/);
  assert.equal(started.user_data.fbp, 'fb.1.1763900000000.42424242');
  assert.equal(started.user_data.em, createHash('sha256').update('checkout.buyer@example.com').digest('hex'));
  assert.equal(started.user_data.ph, createHash('sha256').update('447700900123').digest('hex'));

  // Shopify's orders/create for the same order (via the generic signed route here) is the one
  // server Purchase: the checkout beacon is counted, not relayed, and cannot pre-empt it.
  await eventually(async () => (await worker.stats()).reasons.some((r) => r.reason === 'signed_source_only'), 10_000, 'beacon Purchase counted as signed_source_only');
  const body = JSON.stringify({ order_id: '9876543210', value: 59.5, currency: 'GBP', customer: { email: 'checkout.buyer@example.com' } });
  const hook = await fetch(`${worker.url}/t/hooks/order`, { method: 'POST', body, headers: { 'x-capi-signature': `sha256=${createHmac('sha256', 'order-secret').update(body).digest('hex')}` } });
  assert.equal((await hook.json()).queued, true);
  const purchase = await eventually(() => serverCopy('Purchase', 'purchase:9876543210'), 10_000, 'the order webhook Purchase');
  assert.equal(purchase.custom_data.value, 59.5);
  assert.equal((await sandbox.events()).server.filter((e) => e.event_id === 'purchase:9876543210').length, 1);
  await context.close();
});

test('?capi_test=CODE marks that browser session\'s events only, until ?capi_test=off', async () => {
  const pageViewOf = async (page) => {
    const pv = await eventually(() => page.evaluate(() => (window.__fbqCalls || []).find((c) => c.event_name === 'PageView')), 10_000, 'fbq PageView');
    return eventually(() => serverCopy('PageView', pv.event_id), 10_000, 'server PageView');
  };
  const tester = await browser.newContext();
  const page = await tester.newPage();
  await page.goto(`${worker.url}/?capi_test=TEST777`);
  assert.equal((await pageViewOf(page))._sandbox.test_event_code, 'TEST777');
  await page.goto(`${worker.url}/thank-you`);
  assert.equal((await pageViewOf(page))._sandbox.test_event_code, 'TEST777', 'the whole session, not one page');

  const visitor = await browser.newContext();
  const other = await visitor.newPage();
  await other.goto(`${worker.url}/`);
  assert.equal((await pageViewOf(other))._sandbox.test_event_code, null, 'other visitors are not test traffic');
  await other.goto(`${worker.url}/?capi_test=TEST%3Bx`);
  assert.equal((await pageViewOf(other))._sandbox.test_event_code, null, 'an invalid code is ignored');

  await page.goto(`${worker.url}/?capi_test=off`);
  assert.equal((await pageViewOf(page))._sandbox.test_event_code, null, 'ended by ?capi_test=off');
  await tester.close();
  await visitor.close();
});
