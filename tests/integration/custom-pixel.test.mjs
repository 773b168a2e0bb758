// The Shopify checkout custom pixel (pixel-shim/shopify-custom-pixel.js) run against a stand-in
// for Shopify's custom-pixel sandbox API (analytics, browser.cookie, init/api.customerPrivacy):
// what its beacons and Meta's pixel get under each of its privacy settings. The browser test
// runs it in Chromium against the Worker.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import vm from 'node:vm';
import { ROOT } from './harness.mjs';

const SOURCE = readFileSync(`${ROOT}pixel-shim/shopify-custom-pixel.js`, 'utf8');

/** Runs the snippet with `settings` replacing its constants, fires one checkout_started and
 *  resolves to { beacons, fbq } once it is done. */
async function checkoutStarted({ settings = {}, gpc = false } = {}) {
  let code = SOURCE.replace("const PIXEL_ID = '';", "const PIXEL_ID = '123';");
  for (const [name, value] of Object.entries(settings)) {
    const before = code;
    code = code.replace(new RegExp(`const ${name} = '[a-z]+';`), `const ${name} = '${value}';`);
    assert.notEqual(code, before, `the snippet has a ${name} setting`);
  }
  const handlers = {};
  const beacons = [];
  const sandbox = {
    self: { navigator: { globalPrivacyControl: gpc } },
    crypto: globalThis.crypto,
    analytics: { subscribe: (name, fn) => { handlers[name] = fn; } },
    browser: { cookie: { get: async () => '' } },
    init: { customerPrivacy: { marketingAllowed: true } },
    api: { customerPrivacy: { subscribe: () => {} } },
    // Meta's base code adds a script tag (never loaded here) and queues the calls made before it.
    document: { createElement: () => ({}), getElementsByTagName: () => [{ parentNode: { insertBefore: () => {} } }] },
    fetch: async (url, init) => { beacons.push(JSON.parse(init.body)); },
  };
  sandbox.window = sandbox;
  vm.createContext(sandbox);
  vm.runInContext(code, sandbox);
  const checkout = { email: 'buyer@example.com', phone: '+44 7700 900123', currencyCode: 'GBP', totalPrice: { amount: 10 }, lineItems: [], billingAddress: { firstName: 'Ada', countryCode: 'GB' } };
  await handlers.checkout_started({ data: { checkout }, context: { document: { location: { href: 'https://shop.example.com/checkouts/cn/1' } } } });
  // The calls Meta's pixel got, in order (as plain values: they come from another realm).
  const fbq = JSON.parse(JSON.stringify((sandbox.fbq?.queue ?? []).map((args) => Array.from(args))));
  return { beacons, fbq };
}

test('by default the checkout pixel sends no contact field and no LDU', async () => {
  const { beacons, fbq } = await checkoutStarted();
  assert.equal(beacons.length, 1);
  assert.equal(beacons[0].user_data, undefined, 'CUSTOMER_DATA off: no contact field leaves the browser');
  assert.equal(beacons[0].gpc, undefined);
  assert.ok(!fbq.some((c) => c[0] === 'dataProcessingOptions'));
  assert.deepEqual(fbq.map((c) => c[0]), ['consent', 'init', 'track']);
});

test('CUSTOMER_DATA = hashed sends the buyer\'s fields to the Worker', async () => {
  const { beacons } = await checkoutStarted({ settings: { CUSTOMER_DATA: 'hashed' } });
  assert.equal(beacons[0].user_data.em, 'buyer@example.com');
});

test('LDU and a GPC signal reach Meta\'s pixel before init, as the Worker marks its copies', async () => {
  const on = await checkoutStarted({ settings: { LDU: 'on' } });
  assert.deepEqual(on.fbq.find((c) => c[0] === 'dataProcessingOptions'), ['dataProcessingOptions', ['LDU'], 1, 1000]);
  const geo = await checkoutStarted({ settings: { LDU: 'geo' } });
  assert.deepEqual(geo.fbq.find((c) => c[0] === 'dataProcessingOptions'), ['dataProcessingOptions', ['LDU'], 0, 0]);
  const withGpc = await checkoutStarted({ gpc: true });
  assert.deepEqual(withGpc.fbq.map((c) => c[0]), ['consent', 'dataProcessingOptions', 'init', 'track'], 'LDU before init');
  assert.equal(withGpc.beacons[0].gpc, true);
  const dropped = await checkoutStarted({ gpc: true, settings: { GPC: 'drop' } });
  assert.deepEqual([dropped.beacons.length, dropped.fbq.length], [0, 0], 'GPC = drop: nothing is sent');
  const ignored = await checkoutStarted({ gpc: true, settings: { GPC: 'ignore' } });
  assert.equal(ignored.beacons[0].gpc, undefined);
  assert.ok(!ignored.fbq.some((c) => c[0] === 'dataProcessingOptions'));
});
