// Consent, GPC and LDU in the browser: headless Chromium, the real Worker in workerd, the CAPI
// sandbox (whose fbevents.js stands in for Meta's pixel and, like it, sends nothing while consent
// is revoked). Asserts what a visitor or merchant can check: the requests the browser made, the
// cookies in its jar, the fbq calls and what the sandbox received. "Nothing was sent" is proven by
// order: a marker request the page makes later must come before any tracking request.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { startSandbox, startWorker, eventually, PIXEL_ID, ROOT, launchChromium } from './harness.mjs';

let sandbox, worker, browser;

before(async () => {
  sandbox = await startSandbox();
  worker = await startWorker({ META_GRAPH_URL: sandbox.url });
  // Pages here are served by the test (route.fulfill), so Chromium does not know they are on
  // 127.0.0.1 and would block their requests to the sandbox's loopback port.
  browser = await launchChromium(['--disable-features=LocalNetworkAccessChecks']);
});
after(async () => {
  await browser?.close();
  await worker?.stop();
  sandbox?.stop();
});

/** A storefront page on the Worker's origin with the shim tag (`attrs` added to it), an optional
 * inline script before the tag, and a log of the requests the browser makes. */
async function storefront({ attrs = '', head = '', init } = {}) {
  const context = await browser.newContext();
  if (init) await context.addInitScript(init);
  const page = await context.newPage();
  const requests = [];
  page.on('request', (r) => {
    const u = new URL(r.url());
    if (u.pathname === '/t/e') requests.push({ kind: 'beacon', body: JSON.parse(r.postData()) });
    else if (u.pathname.endsWith('/fbevents.js')) requests.push({ kind: 'pixel' });
    else if (u.pathname === '/marker') requests.push({ kind: 'marker', step: u.searchParams.get('step') });
    else if (u.pathname === '/cart/update.js') requests.push({ kind: 'cart', body: JSON.parse(r.postData()) });
  });
  // Beacons whose answer has come back (a later answer could still write a cookie).
  let answered = 0;
  page.on('requestfinished', (r) => { if (new URL(r.url()).pathname === '/t/e') answered++; });
  page.on('requestfailed', (r) => { if (new URL(r.url()).pathname === '/t/e') answered++; });
  await page.route(`${worker.url}/shop/**`, (route) => route.fulfill({
    contentType: 'text/html',
    body: `<!doctype html><script>window.capi=window.capi||function(){(capi.q=capi.q||[]).push(arguments)};</script>${head}
      <script src="/t/p.js" data-pixel="${PIXEL_ID}" data-fbevents="${sandbox.url}/fbevents.js" ${attrs} async></script>`,
  }));
  await page.route(`${worker.url}/marker*`, (route) => route.fulfill({ status: 204 }));
  await page.route(`${worker.url}/cart/update.js`, (route) => route.fulfill({ contentType: 'application/json', body: '{}' }));
  const open = async (path = '/shop/p') => { await page.goto(worker.url + path); await page.waitForFunction(() => window.capi && window.capi.loaded); };
  // A request the page makes now: anything tracked earlier would have been requested before it.
  const marker = async (step) => {
    await page.evaluate((s) => fetch(`/marker?step=${s}`), step);
    await eventually(() => requests.some((r) => r.kind === 'marker' && r.step === step), 5_000, `marker ${step}`);
  };
  const before = (step) => requests.slice(0, requests.findIndex((r) => r.kind === 'marker' && r.step === step));
  const beacons = () => requests.filter((r) => r.kind === 'beacon').map((r) => r.body);
  const cookieNames = async () => (await context.cookies()).map((c) => c.name);
  // The browser ids a refusal expires, of those in the jar.
  const browserIds = async () => (await cookieNames()).filter((n) => ['_fbp', '_fbc', '_capi_eid'].includes(n));
  const settled = () => eventually(() => answered >= beacons().length, 10_000, 'every beacon answered');
  // Meta's (stand-in) pixel loads asynchronously: its log is read once it has seen `init`.
  const fbqLog = () => eventually(async () => {
    const log = await page.evaluate(() => window.__fbqLog || []);
    return log.some((c) => c[0] === 'init') && log;
  }, 10_000, 'the pixel initialised');
  return { context, page, requests, open, marker, before, beacons, cookieNames, browserIds, settled, fbqLog };
}

const sandboxHas = async (name, id) => {
  const v = await sandbox.events();
  return v.server.some((e) => e.event_name === name && e.event_id === id) && v.browser.some((e) => e.event_name === name && e.event_id === id);
};
const indexOfCall = (log, method, arg) => log.findIndex((c) => c[0] === method && (arg === undefined || c[1] === arg));

test('opt-in (data-consent="required"): nothing before grant, then every held event once, consent before init', async () => {
  const s = await storefront({ attrs: 'data-consent="required"' });
  await s.page.addInitScript(() => document.addEventListener('DOMContentLoaded', () => window.capi('track', 'ViewContent', { content_ids: ['mug'] })));
  await s.open('/shop/p?fbclid=IwAR_optin-1');
  await s.page.evaluate(() => window.capi('track', 'AddToCart', { value: 5, currency: 'EUR' }));
  await s.marker('pending');
  assert.deepEqual(s.before('pending'), [], 'no pixel script, no beacon while consent is pending');
  assert.deepEqual(await s.cookieNames(), [], 'no _fbp/_fbc (no cookie at all) while consent is pending');

  await s.page.evaluate(() => window.capi('consent', 'grant'));
  await eventually(() => s.beacons().length === 3, 10_000, 'three beacons after grant');
  const names = s.beacons().map((b) => b.event_name);
  assert.deepEqual(names, ['PageView', 'ViewContent', 'AddToCart'], 'held events, in order');
  assert.ok(s.beacons().every((b) => b.consent === 'granted' && !('gpc' in b)));
  assert.equal(new Set(s.beacons().map((b) => b.event_id)).size, 3, 'each with its own event_id');
  // The pixel script and the held beacons both start at the grant; either may be seen first.
  await eventually(() => s.requests.some((r) => r.kind === 'pixel'), 10_000, 'Meta pixel loaded after grant');
  const names2 = await s.cookieNames();
  assert.ok(names2.includes('_fbp') && names2.includes('_fbc'), '_fbp/_fbc minted after grant');

  const log = await s.fbqLog();
  assert.ok(indexOfCall(log, 'consent', 'grant') >= 0 && indexOfCall(log, 'consent', 'grant') < indexOfCall(log, 'init'), 'fbq consent grant before init');
  for (const b of s.beacons()) await eventually(() => sandboxHas(b.event_name, b.event_id), 10_000, `${b.event_name} from pixel and server`);

  // A second grant must not replay anything.
  await s.page.evaluate(() => window.capi('consent', 'grant'));
  await s.marker('again');
  assert.equal(s.beacons().length, 3, 'held events were sent exactly once');
  await s.context.close();
});

test('opt-in then revoke: nothing is ever sent, held events are dropped', async () => {
  const s = await storefront({ attrs: 'data-consent="required"' });
  await s.open();
  await s.page.evaluate(() => { window.capi('track', 'AddToCart', { value: 1, currency: 'EUR' }); window.capi('consent', 'revoke'); window.capi('track', 'Lead'); });
  await s.marker('revoked');
  assert.deepEqual(s.before('revoked'), []);
  assert.deepEqual(await s.cookieNames(), []);
  // A later grant starts tracking from then on: the dropped events stay dropped.
  await s.page.evaluate(() => { window.capi('consent', 'grant'); window.capi('trackCustom', 'AfterGrant'); });
  await s.marker('granted');
  await eventually(() => s.beacons().length >= 1, 5_000, 'the post-grant beacon');
  assert.deepEqual(s.beacons().map((b) => b.event_name), ['AfterGrant'], 'PageView, AddToCart and Lead were dropped on revoke');
  await s.context.close();
});

test('default (optional) then revoke: beacons stop and Meta\'s pixel is told', async () => {
  const s = await storefront();
  await s.open();
  await eventually(() => s.beacons().some((b) => b.event_name === 'PageView'), 10_000, 'PageView');
  assert.ok(!('consent' in s.beacons()[0]), 'consent unknown: omitted');
  await s.fbqLog();
  await s.page.evaluate(() => { window.capi('consent', 'revoke'); window.capi('trackCustom', 'AfterRevoke'); });
  await s.marker('after');
  assert.deepEqual(s.beacons().map((b) => b.event_name), ['PageView']);
  const log = await s.fbqLog();
  assert.ok(indexOfCall(log, 'consent', 'revoke') > indexOfCall(log, 'init'), 'revoke mirrored to fbq');
  assert.equal(indexOfCall(log, 'trackCustom', 'AfterRevoke'), -1, 'the pixel got no event after revoke');
  await s.context.close();
});

/** A GPC signal honoured in `s`'s tab: beacons say so, Meta's pixel gets LDU before its init,
 * and the cart carries it back to the order's webhook, whose Purchase gets LDU too. Closes `s`. */
async function honoursGpc(s) {
  await eventually(() => s.beacons().some((b) => b.event_name === 'PageView'), 10_000, 'PageView');
  assert.equal(s.beacons()[0].gpc, true);
  const log = await s.fbqLog();
  const dpo = indexOfCall(log, 'dataProcessingOptions');
  assert.ok(dpo >= 0 && dpo < indexOfCall(log, 'init'), 'dataProcessingOptions before init');
  assert.deepEqual(log[dpo], ['dataProcessingOptions', ['LDU'], 0, 0]);
  const cart = await eventually(() => s.requests.find((r) => r.kind === 'cart' && r.body.attributes._fbp), 5_000, 'cart attributes');
  assert.equal(cart.body.attributes._capi_gpc, '1');
  await s.context.close();
}

test('GPC: beacons carry gpc:true, Meta\'s pixel gets LDU before init, and a Shopify order carries it', async () => {
  const s = await storefront({ attrs: 'data-shopify-cart="on"', init: () => Object.defineProperty(Navigator.prototype, 'globalPrivacyControl', { get: () => true }) });
  await s.open();
  await honoursGpc(s);
});

test('Shopify, GPC and no marketing decision yet: the cart carries the GPC signal alone, nothing else leaves', async () => {
  const s = await storefront({
    attrs: 'data-shopify-cart="on"',
    head: '<script>window.Shopify = { customerPrivacy: { marketingAllowed: () => false } };</script>',
    init: () => Object.defineProperty(Navigator.prototype, 'globalPrivacyControl', { get: () => true }),
  });
  await s.open('/shop/products/mug');
  const cart = await eventually(() => s.requests.find((r) => r.kind === 'cart'), 5_000, 'cart attributes');
  assert.deepEqual(cart.body, { attributes: { _capi_gpc: '1' } }, 'no _fbp/_fbc before tracking');
  await s.marker('undecided');
  assert.deepEqual(s.before('undecided').filter((r) => r.kind !== 'cart'), [], 'no pixel, no beacon');
  assert.deepEqual(await s.cookieNames(), []);
  await s.context.close();
});

test('Shopify Customer Privacy API: marketing denied sends nothing; visitorConsentCollected(allowed) starts tracking', async () => {
  const s = await storefront({
    attrs: 'data-shopify-cart="on"',
    head: '<script>window.Shopify = { customerPrivacy: { marketingAllowed: () => false } };</script>',
  });
  await s.open('/shop/products/mug');
  await s.page.evaluate(() => window.capi('track', 'AddToCart', { value: 3, currency: 'EUR' }));
  await s.marker('denied');
  assert.deepEqual(s.before('denied'), [], 'no pixel, no beacon, no cart attributes');
  assert.deepEqual(await s.cookieNames(), []);

  await s.page.evaluate(() => document.dispatchEvent(new CustomEvent('visitorConsentCollected', { detail: { marketingAllowed: true } })));
  await eventually(() => s.beacons().length === 2, 10_000, 'held PageView and AddToCart');
  assert.deepEqual(s.beacons().map((b) => [b.event_name, b.consent]), [['PageView', 'granted'], ['AddToCart', 'granted']]);
  const cart = await eventually(() => s.requests.find((r) => r.kind === 'cart'), 5_000, 'cart attributes');
  const jar = Object.fromEntries((await s.context.cookies()).map((c) => [c.name, c.value]));
  assert.deepEqual(cart.body, { attributes: { _fbp: jar._fbp, _fbc: '', _capi_consent: 'granted' } });
  await s.context.close();
});

test('Shopify: Customer Privacy API loaded through Shopify.loadFeatures, marketing allowed → tracked', async () => {
  const s = await storefront({
    head: `<script>window.Shopify = { loadFeatures: (features, cb) => setTimeout(() => {
      window.__features = features; Shopify.customerPrivacy = { marketingAllowed: () => true }; cb(); }, 10) };</script>`,
  });
  await s.open('/shop/products/mug');
  await eventually(() => s.beacons().some((b) => b.event_name === 'PageView' && b.consent === 'granted'), 10_000, 'PageView');
  assert.deepEqual(await s.page.evaluate(() => window.__features), [{ name: 'consent-tracking-api', version: '0.1' }]);
  await s.context.close();
});

test('default (optional): a refusal is remembered on the next page, and the browser ids expire', async () => {
  const s = await storefront();
  await s.open();
  await eventually(() => s.beacons().some((b) => b.event_name === 'PageView'), 10_000, 'PageView');
  await eventually(async () => (await s.cookieNames()).includes('_fbp'), 5_000, '_fbp');
  // Nothing in flight here: the next test holds a beacon's answer until after the refusal.
  await s.settled();
  await s.page.evaluate(() => window.capi('consent', 'revoke'));
  assert.deepEqual(await s.browserIds(), [], 'ids expired on revoke');
  // The next page: nothing leaves before the banner speaks again (no pixel, no beacon).
  const firstPage = s.requests.length;
  await s.open('/shop/next');
  await s.page.evaluate(() => window.capi('track', 'ViewContent'));
  await s.marker('next-page');
  assert.deepEqual(s.before('next-page').slice(firstPage), [], 'nothing from the next page');
  // A grant forgets the refusal.
  await s.page.evaluate(() => { window.capi('consent', 'grant'); window.capi('trackCustom', 'AfterGrant'); });
  await eventually(() => s.beacons().some((b) => b.event_name === 'AfterGrant'), 10_000, 'after grant');
  assert.ok(s.beacons().some((b) => b.event_name === 'ViewContent'), 'what waited on the next page is sent on grant');
  await s.open('/shop/third');
  await eventually(() => s.beacons().some((b) => b.event_name === 'PageView' && b.event_source_url.endsWith('/shop/third')), 10_000, 'the third page is tracked');
  await s.context.close();
});

test('default (optional): a beacon in flight when the visitor refuses cannot write the ids back', async () => {
  const s = await storefront();
  // The PageView's request is held at the browser's edge until the refusal has happened; it
  // then reaches the Worker, which answers with its Set-Cookie for _fbp as for any beacon.
  let release;
  const held = new Promise((r) => { release = r; });
  await s.page.route(`${worker.url}/t/e`, async (route) => { await held; await route.continue(); });
  await s.open();
  await eventually(() => s.beacons().some((b) => b.event_name === 'PageView'), 10_000, 'PageView');
  await eventually(async () => (await s.cookieNames()).includes('_fbp'), 5_000, '_fbp');
  await s.page.evaluate(() => window.capi('consent', 'revoke'));
  assert.deepEqual(await s.browserIds(), [], 'ids expired on revoke');
  // Told when the page has seen the answer land (after the shim's own handling of it).
  await s.page.evaluate(() => {
    const shim = window.capi.settled;
    window.capi.settled = () => { if (shim) shim(); window.answerLanded = true; };
  });
  const answered = s.page.waitForResponse((r) => new URL(r.url()).pathname === '/t/e');
  release();
  const answer = await answered;
  assert.match((await answer.allHeaders())['set-cookie'] ?? '', /(^|\n)_fbp=fb\./, "the Worker's answer carries _fbp");
  await eventually(() => s.page.evaluate(() => window.answerLanded === true), 5_000, 'the answer landed in the page');
  assert.deepEqual(await s.browserIds(), [], 'no id outlives the refusal');
  await s.context.close();
});

test('Shopify: "do not sell or share" (saleOfDataAllowed false) counts as GPC: LDU before init, gpc on beacons, in the cart', async () => {
  const s = await storefront({
    attrs: 'data-shopify-cart="on"',
    head: '<script>window.Shopify = { customerPrivacy: { marketingAllowed: () => true, saleOfDataAllowed: () => false } };</script>',
  });
  await s.open('/shop/products/mug');
  await honoursGpc(s);
});

test('Shopify checkout custom pixel with marketing denied sends nothing', async () => {
  const snippet = readFileSync(`${ROOT}pixel-shim/shopify-custom-pixel.js`, 'utf8')
    .replace("const CAPI_ENDPOINT = 'https://shop.example.com/t/e';", `const CAPI_ENDPOINT = '${worker.url}/t/e';`)
    .replace("const PIXEL_ID = '';", `const PIXEL_ID = '${PIXEL_ID}';`)
    .replace("'https://connect.facebook.net/en_US/fbevents.js'", `'${sandbox.url}/fbevents.js'`);
  const s = await storefront();
  await s.context.addCookies([{ name: '_fbp', value: 'fb.1.1763900000000.77700100', url: worker.url }]);
  await s.page.route(`${worker.url}/checkouts/cn/denied`, (route) => route.fulfill({
    contentType: 'text/html',
    body: `<!doctype html><script>
      const handlers = {}, consent = [];
      window.analytics = { subscribe: (name, fn) => { handlers[name] = fn; } };
      // The _fbp Shopify's sandbox reads for the pixel: under workerd the client address is
      // loopback, which is never sent, so the Purchase needs a match key of its own.
      window.browser = { cookie: { get: async (name) => (name == '_fbp' ? 'fb.1.1763900000000.77700100' : '') } };
      window.init = { customerPrivacy: { marketingAllowed: false } };
      window.api = { customerPrivacy: { subscribe: (name, fn) => consent.push(fn) } };
      window.fire = (name, data) => handlers[name]({ data, context: { document: { location: { href: location.href } } } });
      window.allow = () => consent.forEach((fn) => fn({ customerPrivacy: { marketingAllowed: true } }));
    </script><script>${snippet}</script>`,
  }));
  await s.page.goto(`${worker.url}/checkouts/cn/denied`);
  const checkout = { currencyCode: 'EUR', totalPrice: { amount: 20 }, lineItems: [], order: { id: ' 777001 ' } };
  await s.page.evaluate((c) => { window.fire('checkout_started', { checkout: c }); window.fire('checkout_completed', { checkout: c }); }, checkout);
  await s.marker('denied');
  assert.deepEqual(s.before('denied'), [], 'no beacon, no Meta pixel while marketing is not allowed');
  await s.page.evaluate((c) => { window.allow(); window.fire('checkout_completed', { checkout: c }); }, checkout);
  await eventually(() => s.beacons().length === 1, 10_000, 'the Purchase after consent');
  assert.deepEqual([s.beacons()[0].event_id, s.beacons()[0].consent], ['purchase:777001', 'granted']);
  await eventually(async () => (await sandbox.events()).server.some((e) => e.event_id === 'purchase:777001'), 10_000, 'server Purchase');
  await eventually(async () => (await sandbox.events()).browser.some((e) => e.event_id === 'purchase:777001'), 10_000, 'pixel Purchase');
  const log = await s.fbqLog();
  assert.ok(indexOfCall(log, 'consent', 'grant') < indexOfCall(log, 'init'));
  await s.context.close();
});
