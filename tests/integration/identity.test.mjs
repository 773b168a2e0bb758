// One first-party identity, as Meta's Parameter Builder keeps it, checked where a merchant would
// check it: what Meta (the sandbox) received — client_ip_address, fbc, external_id — and, in
// headless Chromium, what the browser pixel was initialised with.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { startSandbox, startWorker, eventually, isSha256, launchChromium } from './harness.mjs';

const UA = 'Mozilla/5.0 (X11; Linux x86_64) capi-edge-identity';
const sha = (s) => createHash('sha256').update(s).digest('hex');
const uid = () => `id-${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
const CLICK = 'IwAR2F4-dbP0l7Mn1IawQQGCINEz7PYXQvwjNwB_qa2ofrHyiLjcbCRxTDMgE';
// A 5-part _fbc as Parameter Builder leaves it: its appendix (Node.js SDK, unchanged, 1.0.0).
const PB_FBC = `fb.1.1700000000000.${CLICK}.AQQAAQAA`;

let sandbox, on, off;
before(async () => {
  sandbox = await startSandbox();
  [on, off] = await Promise.all([
    startWorker({ META_GRAPH_URL: sandbox.url, CUSTOMER_DATA: 'hashed', DEMO_STOREFRONT: 'on' }),
    startWorker({ META_GRAPH_URL: sandbox.url, DEMO_STOREFRONT: 'on' }),
  ]);
});
after(async () => {
  await Promise.all([on?.stop(), off?.stop()]);
  sandbox?.stop();
});

/** Posts a beacon as the shim would (same origin), with the given request headers. */
function beacon(worker, body, headers = {}) {
  const origin = new URL(worker.url).origin;
  return worker.fetch('/t/e', {
    method: 'POST',
    headers: { 'content-type': 'text/plain', origin, 'user-agent': UA, 'cf-connecting-ip': '203.0.113.60', ...headers },
    body: JSON.stringify(body),
  });
}
const event = (extra = {}) => ({ event_name: 'ViewContent', event_id: uid(), event_source_url: 'https://shop.test/p/mug', event_time_ms: Date.now(), ...extra });
const atMeta = (id) => eventually(async () => (await sandbox.events()).server.find((e) => e.event_id === id), 10_000, `server copy of ${id}`);
const cookieNamed = (res, name) => res.headers.getSetCookie().find((c) => c.startsWith(`${name}=`));

test('client_ip_address: the IPv6 address behind a pseudo IPv4, never a private one, never a port', async () => {
  const cases = [
    // Cloudflare's Pseudo IPv4 "Overwrite headers": a Class E stand-in, the real address beside it.
    [{ 'cf-connecting-ip': '240.16.0.1', 'cf-connecting-ipv6': '2001:4860:4860::8888' }, '2001:4860:4860::8888'],
    // A real IPv4 client: an IPv6 header Cloudflare would not have set is not taken.
    [{ 'cf-connecting-ip': '203.0.113.61', 'cf-connecting-ipv6': '2001:4860:4860::8844' }, '203.0.113.61'],
    [{ 'cf-connecting-ip': '2001:4860:4860:0:0:0:0:8844' }, '2001:4860:4860::8844'],
    [{ 'cf-connecting-ip': '10.0.0.7' }, undefined],
    [{ 'cf-connecting-ip': '127.0.0.1' }, undefined],
    [{ 'cf-connecting-ip': '240.16.0.1' }, undefined],
    [{ 'cf-connecting-ip': '203.0.113.62:443' }, '203.0.113.62'],
  ];
  const sent = [];
  for (const [headers, expected] of cases) {
    const e = event();
    // An _fbp as the shim always has one: without an address the event still has a match key.
    assert.equal((await beacon(off, e, { ...headers, cookie: '_fbp=fb.1.1700000000000.42' })).status, 204);
    sent.push([e.event_id, headers, expected]);
  }
  for (const [id, headers, expected] of sent) {
    const ev = await atMeta(id);
    assert.equal(ev.user_data.client_ip_address, expected, JSON.stringify(headers));
    assert.equal(ev.user_data.client_user_agent, UA, 'the event is sent all the same');
  }
});

test('a 5-part _fbc (Parameter Builder appendix) is kept and sent as it is, and replaced only for a new click', async () => {
  const same = event({ event_source_url: `https://shop.test/p/mug?fbclid=${CLICK}` });
  const res = await beacon(off, same, { cookie: `_fbc=${PB_FBC}` });
  assert.equal(res.status, 204);
  assert.ok(cookieNamed(res, '_fbc')?.startsWith(`_fbc=${PB_FBC};`), 'the same value, re-set as a server cookie');
  assert.equal((await atMeta(same.event_id)).user_data.fbc, PB_FBC, 'Meta gets the cookie unaltered, appendix and all');

  const noClick = event();
  await beacon(off, noClick, { cookie: `_fbc=${PB_FBC}` });
  assert.equal((await atMeta(noClick.event_id)).user_data.fbc, PB_FBC);

  const newClick = event({ event_source_url: 'https://shop.test/p/mug?fbclid=IwAR_other-Click' });
  const res2 = await beacon(off, newClick, { cookie: `_fbc=${PB_FBC}` });
  const fbc = (await atMeta(newClick.event_id)).user_data.fbc;
  assert.match(fbc, /^fb\.\d\.\d{13}\.IwAR_other-Click$/, 'a new click id: a new _fbc, no appendix of ours');
  assert.ok(cookieNamed(res2, '_fbc')?.startsWith(`_fbc=${fbc};`));

  // A fifth part Parameter Builder would not accept is no _fbc at all.
  const bad = event();
  await beacon(off, bad, { cookie: `_fbc=fb.1.1700000000000.${CLICK}.AB` });
  assert.equal((await atMeta(bad.event_id)).user_data.fbc, undefined);

  // fbclid from the referrer when the landing URL lost it (Parameter Builder reads the Referer too).
  const viaReferrer = event({ referrer_url: 'https://shop.test/landing?fbclid=IwAR_from-Referrer' });
  await beacon(off, viaReferrer);
  assert.match((await atMeta(viaReferrer.event_id)).user_data.fbc, /^fb\.\d\.\d{13}\.IwAR_from-Referrer$/);
});

test('data controls on: one browser id per browser, set once by the Worker, sent hashed as external_id', async () => {
  const first = event();
  const res = await beacon(on, first);
  assert.equal(res.status, 204);
  const set = cookieNamed(res, '_capi_eid');
  assert.ok(set, res.headers.getSetCookie().join(' | '));
  const id = set.match(/^_capi_eid=([0-9a-f]{32});/)?.[1];
  assert.ok(id, set);
  assert.match(set, /; Max-Age=31536000; Path=\/; SameSite=Lax/, 'one year');
  assert.doesNotMatch(set, /HttpOnly/i, 'the shim reads it for the pixel');
  const ev = await atMeta(first.event_id);
  assert.ok(isSha256(ev.user_data.external_id));
  assert.equal(ev.user_data.external_id, sha(id), 'SHA-256 of the id, never the id');
  assert.ok(!JSON.stringify(ev).includes(id), 'the raw id never reaches Meta');

  const next = event();
  const res2 = await beacon(on, next, { cookie: `_capi_eid=${id}; _fbp=fb.1.1700000000000.42` });
  assert.equal(cookieNamed(res2, '_capi_eid'), undefined, 'not re-set: a visit does not extend it');
  assert.equal((await atMeta(next.event_id)).user_data.external_id, sha(id), 'the same id on every event');

  // The shop's own customer id (as its orders carry it) wins over the browser id.
  const customer = event({ user_data: { external_id: 'Customer-42' } });
  await beacon(on, customer, { cookie: `_capi_eid=${id}` });
  assert.equal((await atMeta(customer.event_id)).user_data.external_id, sha('customer-42'));
});

test('data controls off or consent refused: no browser id is written or sent, one from before is deleted', async () => {
  const plain = event();
  const res = await beacon(off, plain);
  assert.equal(cookieNamed(res, '_capi_eid'), undefined);
  assert.equal((await atMeta(plain.event_id)).user_data.external_id, undefined);

  const leftover = event();
  const res2 = await beacon(off, leftover, { cookie: '_capi_eid=0123456789abcdef0123456789abcdef' });
  assert.match(cookieNamed(res2, '_capi_eid') ?? '', /^_capi_eid=; Max-Age=0; Path=\//, 'deleted');
  assert.equal((await atMeta(leftover.event_id)).user_data.external_id, undefined);

  const refused = event({ consent: 'denied' });
  const res3 = await beacon(on, refused);
  assert.equal(res3.status, 204);
  assert.deepEqual(res3.headers.getSetCookie(), [], 'no cookie without consent');
  const later = event();
  await beacon(on, later);
  await atMeta(later.event_id);
  assert.equal((await sandbox.events()).server.find((e) => e.event_id === refused.event_id), undefined, 'nothing reaches Meta');
});

test('in the browser: the pixel is initialised with the same hashed external_id the server copies carry', async () => {
  const browser = await launchChromium();
  try {
    const visit = async (worker, context) => {
      const page = await context.newPage();
      await page.goto(`${worker.url}/`);
      const view = await eventually(() => page.evaluate(() => (window.__fbqCalls || []).find((c) => c.event_name === 'PageView')), 10_000, 'fbq PageView');
      const init = await page.evaluate(() => (window.__fbqLog || []).find((c) => c[0] === 'init'));
      const server = await atMeta(view.event_id);
      await page.close();
      return { init, server };
    };

    const context = await browser.newContext();
    // First visit: no id yet in the browser; the Worker sets one with the PageView's answer.
    const first = await visit(on, context);
    assert.equal(first.init[2], undefined, 'no id on the very first page');
    const id = await eventually(async () => (await context.cookies()).find((c) => c.name === '_capi_eid')?.value, 5_000, '_capi_eid');
    assert.equal(first.server.user_data.external_id, sha(id));
    // From the next page on, pixel and server copy carry one external_id.
    const second = await visit(on, context);
    assert.deepEqual(second.init[2], { external_id: sha(id) }, 'fbq init with the hashed browser id');
    assert.equal(second.server.user_data.external_id, sha(id));
    await context.close();

    const offContext = await browser.newContext();
    await offContext.addCookies([{ name: '_capi_eid', value: id, url: off.url }]);
    const plain = await visit(off, offContext);
    assert.equal(plain.init[2], undefined, 'data controls off: no external_id for the pixel');
    assert.equal(plain.server.user_data.external_id, undefined);
    await eventually(async () => !(await offContext.cookies()).some((c) => c.name === '_capi_eid'), 5_000, 'the old id deleted');
    await offContext.close();
  } finally {
    await browser.close();
  }
});
