// The browser side of rules/tests/data/browser_rules.json: the same known answers the Rust tests
// check, observed where a merchant would see them — the cookies the built shim (build/shim) writes
// in headless Chromium, the event ids of its beacons, and the beacons of the Shopify custom pixel
// (evaluated in Node with an emulated custom-pixel sandbox).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import vm from 'node:vm';
import { ROOT, launchChromium } from './harness.mjs';

const V = JSON.parse(readFileSync(`${ROOT}rules/tests/data/browser_rules.json`, 'utf8'));
const P_JS = readFileSync(`${ROOT}build/shim/p.js`);
const P_WASM = readFileSync(`${ROOT}build/shim/p.wasm`);
// Values a browser can hold in a cookie at all (RFC 6265 cookie-octet).
const cookieSafe = (v) => /^[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]+$/.test(v);

let browser;
before(async () => {
  browser = await launchChromium();
});
after(async () => { await browser?.close(); });

/** A fresh browser whose every request is answered here: any URL is a page with the shim tag,
 * /t/p.js and /t/p.wasm are the built shim, /t/e records beacons. Nothing leaves the machine. */
async function shop({ cookies = [], tag = '' } = {}) {
  const context = await browser.newContext();
  const beacons = [];
  await context.route('**/*', (route) => {
    const url = new URL(route.request().url());
    if (url.pathname === '/t/p.js') return route.fulfill({ contentType: 'text/javascript', body: P_JS });
    if (url.pathname === '/t/p.wasm') return route.fulfill({ contentType: 'application/wasm', body: P_WASM });
    if (url.pathname === '/t/e') { beacons.push(JSON.parse(route.request().postData())); return route.fulfill({ status: 204 }); }
    return route.fulfill({ contentType: 'text/html', body: `<!doctype html><script src="/t/p.js" data-fbq="off" ${tag} async></script>` });
  });
  if (cookies.length) await context.addCookies(cookies);
  const page = await context.newPage();
  const open = async (url) => { await page.goto(url); await page.waitForFunction(() => window.capi && window.capi.loaded); };
  const jar = async (name) => (await context.cookies()).filter((c) => c.name === name);
  return { context, page, beacons, open, jar };
}

test('fbclid_in_url: the _fbc the shim writes holds the click id the rules find in the page URL', async () => {
  for (const c of V.fbclid_in_url) {
    const s = await shop();
    await s.open(c.url);
    const fbc = (await s.jar('_fbc')).map((k) => k.value);
    if (c.expected === null) assert.deepEqual(fbc, [], `${c.url} (${c.source})`);
    else assert.match(fbc[0] ?? '', new RegExp(`^fb\\.\\d\\.\\d{13}\\.${c.expected}$`), `${c.url} (${c.source})`);
    await s.context.close();
  }
});

test('is_valid_fbclid: only a valid click id becomes an _fbc', async () => {
  for (const c of V.is_valid_fbclid) {
    const s = await shop();
    await s.open(`https://shop.example.com/p?fbclid=${c.value}`);
    assert.equal((await s.jar('_fbc')).length, c.expected ? 1 : 0, `${c.value.slice(0, 40)} (${c.source})`);
    await s.context.close();
  }
});

test('fbc_click_id: an _fbc holding the URL\'s click id is kept, any other is replaced', async () => {
  const cases = V.fbc_click_id.filter((c) => cookieSafe(c.value));
  assert.ok(cases.length >= 8, 'most vectors can be cookies');
  for (const c of cases) {
    // When the rules say "no click id", offer the value's 4th segment: a lax parser would keep it.
    const fourth = c.value.split('.')[3];
    const click = c.expected ?? (/^[A-Za-z0-9_-]+$/.test(fourth ?? '') ? fourth : 'Probe_1');
    const s = await shop({ cookies: [{ name: '_fbc', value: c.value, domain: '.example.com', path: '/' }] });
    await s.open(`https://shop.example.com/p?fbclid=${click}`);
    const values = (await s.jar('_fbc')).map((k) => k.value);
    if (c.expected !== null) assert.deepEqual(values, [c.value], `kept: ${c.value} (${c.source})`);
    else {
      assert.equal(values.length, 1, c.value);
      assert.notEqual(values[0], c.value, `replaced: ${c.value} (${c.source})`);
      assert.ok(values[0].endsWith(`.${click}`), values[0]);
    }
    await s.context.close();
  }
});

test('is_valid_fbp: a valid _fbp is kept, a malformed one is replaced by a valid one', async () => {
  const cases = V.is_valid_fbp.filter((c) => cookieSafe(c.value));
  assert.ok(cases.some((c) => c.expected) && cases.some((c) => !c.expected));
  for (const c of cases) {
    const s = await shop({ cookies: [{ name: '_fbp', value: c.value, domain: '.example.com', path: '/' }] });
    await s.open('https://shop.example.com/');
    const values = (await s.jar('_fbp')).map((k) => k.value);
    assert.equal(values.length, 1, c.value);
    if (c.expected) assert.equal(values[0], c.value, `kept (${c.source})`);
    else assert.match(values[0], /^fb\.1\.\d{13}\.\d+$/, `replaced: ${c.value} (${c.source})`);
    await s.context.close();
  }
});

test('subdomain_index: the _fbp the shim mints carries the index of the domain it landed on', async () => {
  const index = Object.fromEntries(V.subdomain_index.map((c) => [c.domain, c.expected]));
  const seen = [];
  for (const url of ['https://www.example.com/', 'https://shop.example.co.uk/', 'http://localhost/', 'http://127.0.0.1/']) {
    const s = await shop();
    await s.open(url);
    const [fbp] = await s.jar('_fbp');
    assert.ok(fbp, `${url}: _fbp minted`);
    const domain = fbp.domain.replace(/^\./, '');
    assert.ok(domain in index, `${domain} has a known answer`);
    assert.equal(Number(fbp.value.split('.')[1]), index[domain], `${url} → cookie on ${fbp.domain}`);
    seen.push(domain);
    await s.context.close();
  }
  assert.deepEqual(seen, ['example.com', 'example.co.uk', 'localhost', '127.0.0.1'], 'registrable domain, or host-only');
});

test('event_id_for_order: the shim\'s Purchase beacon carries the rules\' event id', async () => {
  const s = await shop({ tag: 'data-pageview="off"' });
  await s.open('https://shop.example.com/thank-you');
  // Half as `capi('purchase', …)`, half as `capi('track', 'Purchase', …)`, as fbq users write it.
  for (const [i, c] of V.event_id_for_order.entries()) {
    await s.page.evaluate(([id, track]) => (track ? window.capi('track', 'Purchase', { order_id: id, value: 1, currency: 'EUR' })
      : window.capi('purchase', { order_id: id, value: 1, currency: 'EUR' })), [c.order_id, i % 2 === 1]);
  }
  // sendBeacon is asynchronous: wait for one beacon per vector, then compare in order.
  const end = Date.now() + 10_000;
  while (s.beacons.length < V.event_id_for_order.length && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual(s.beacons.map((b) => b.event_id).sort(), V.event_id_for_order.map((c) => c.expected).sort());
  await s.context.close();
});

/** Runs pixel-shim/shopify-custom-pixel.js in a Node vm with Shopify's custom-pixel globals,
 *  its constants set from `settings` (PIXEL_ID, CUSTOMER_DATA, LDU, GPC) and the browser's GPC
 *  signal from `gpc`. `fbq()`: the calls Meta's base code queued, in order. */
function customPixel({ marketingAllowed = true, settings = {}, gpc = false, saleOfDataAllowed = true }) {
  let code = readFileSync(`${ROOT}pixel-shim/shopify-custom-pixel.js`, 'utf8');
  for (const [name, value] of Object.entries(settings)) {
    const set = code.replace(new RegExp(`const ${name} = '[a-z0-9]*';`), `const ${name} = '${value}';`);
    assert.notEqual(set, code, `the snippet has a ${name} setting`);
    code = set;
  }
  const handlers = {}, consentHandlers = [], posts = [];
  const ctx = {
    analytics: { subscribe: (name, fn) => { handlers[name] = fn; } },
    browser: { cookie: { get: async () => '' } },
    init: { customerPrivacy: { marketingAllowed, saleOfDataAllowed } },
    api: { customerPrivacy: { subscribe: (name, fn) => { if (name === 'visitorConsentCollected') consentHandlers.push(fn); } } },
    fetch: async (url, opts) => { posts.push({ url, opts, body: JSON.parse(opts.body) }); return { ok: true }; },
    crypto: globalThis.crypto,
    navigator: { globalPrivacyControl: gpc },
    // Meta's base code adds a script tag (never loaded here) and queues the calls made to it.
    document: { createElement: () => ({}), getElementsByTagName: () => [{ parentNode: { insertBefore: () => {} } }] },
  };
  ctx.window = ctx;
  vm.runInNewContext(code, ctx);
  const fire = async (name, checkout) => {
    handlers[name]({ data: { checkout }, context: { document: { location: { href: 'https://shop.example.com/checkouts/cn/1' } } } });
    // The pixel reads cookies asynchronously before it posts: let those promises settle.
    await new Promise((r) => setImmediate(r));
  };
  return {
    fire,
    posts,
    consent: (allowed) => consentHandlers.forEach((fn) => fn({ customerPrivacy: { marketingAllowed: allowed } })),
    // Plain values: they come from the vm's realm.
    fbq: () => JSON.parse(JSON.stringify((ctx.fbq?.queue ?? []).map((args) => Array.from(args)))),
  };
}

const checkout = (orderId) => ({ currencyCode: 'EUR', totalPrice: { amount: 10 }, lineItems: [], order: { id: orderId } });

test('event_id_for_order: the Shopify custom pixel derives the same Purchase ids', async () => {
  const px = customPixel({ marketingAllowed: true });
  for (const c of V.event_id_for_order) await px.fire('checkout_completed', checkout(c.order_id));
  assert.deepEqual(px.posts.map((p) => p.body.event_id), V.event_id_for_order.map((c) => c.expected));
  for (const p of px.posts) {
    assert.equal(p.opts.credentials, 'omit');
    assert.equal(p.body.consent, 'granted');
  }
});

test('the Shopify custom pixel sends nothing until marketing is allowed', async () => {
  const px = customPixel({ marketingAllowed: false });
  await px.fire('checkout_started', checkout('1'));
  await px.fire('checkout_completed', checkout('1001'));
  px.consent(true);
  await px.fire('checkout_completed', checkout('1002'));
  px.consent(false);
  await px.fire('checkout_completed', checkout('1003'));
  assert.deepEqual(px.posts.map((p) => p.body.event_id), ['purchase:1002']);
});

const buyer = { ...checkout('1'), email: 'buyer@example.com', billingAddress: { firstName: 'Ada', countryCode: 'GB' } };

test('the Shopify custom pixel sends no contact field by default, and the buyer\'s with CUSTOMER_DATA = hashed', async () => {
  const off = customPixel({ settings: { PIXEL_ID: '123' } });
  await off.fire('checkout_started', buyer);
  assert.equal(off.posts[0].body.user_data, undefined, 'no contact field leaves the browser');
  assert.deepEqual(off.fbq().map((c) => c[0]), ['consent', 'init', 'track'], 'no LDU by default');
  const hashed = customPixel({ settings: { CUSTOMER_DATA: 'hashed' } });
  await hashed.fire('checkout_started', buyer);
  assert.equal(hashed.posts[0].body.user_data.em, 'buyer@example.com');
});

test('the Shopify custom pixel gives Meta\'s pixel LDU before init, as the Worker marks its copies, and honours GPC', async () => {
  const ldu = async (settings, gpc = false) => {
    const px = customPixel({ settings: { PIXEL_ID: '123', ...settings }, gpc });
    await px.fire('checkout_started', buyer);
    return px;
  };
  assert.deepEqual((await ldu({ LDU: 'on' })).fbq()[1], ['dataProcessingOptions', ['LDU'], 1, 1000]);
  assert.deepEqual((await ldu({ LDU: 'geo' })).fbq()[1], ['dataProcessingOptions', ['LDU'], 0, 0]);
  const signal = await ldu({}, true);
  assert.deepEqual(signal.fbq().map((c) => c[0]), ['consent', 'dataProcessingOptions', 'init', 'track']);
  assert.equal(signal.posts[0].body.gpc, true);
  const dropped = await ldu({ GPC: 'drop' }, true);
  assert.deepEqual([dropped.posts.length, dropped.fbq().length], [0, 0], 'GPC = drop: nothing is sent');
  const ignored = await ldu({ GPC: 'ignore' }, true);
  assert.equal(ignored.posts[0].body.gpc, undefined);
  assert.ok(!ignored.fbq().some((c) => c[0] === 'dataProcessingOptions'));
  // The visitor's "do not sell or share" in Shopify's Customer Privacy API counts as GPC.
  const optOut = customPixel({ settings: { PIXEL_ID: '123' }, saleOfDataAllowed: false });
  await optOut.fire('checkout_started', buyer);
  assert.deepEqual(optOut.fbq().map((c) => c[0]), ['consent', 'dataProcessingOptions', 'init', 'track']);
  assert.equal(optOut.posts[0].body.gpc, true);
});
