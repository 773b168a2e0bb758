// capi-edge — Shopify checkout custom pixel.
// Paste into Shopify admin → Settings → Customer events → Add custom pixel, then set the two
// constants. Shopify runs checkout scripts only as sandboxed custom pixels, so this is plain JS
// (no wasm): it reports checkout_started, payment_info_submitted and checkout_completed to the
// Worker with fetch(keepalive), and — when PIXEL_ID is set — to Meta's pixel with the same
// eventID. checkout_completed uses event_id "purchase:<order id>", the id the Worker derives
// from the orders/create webhook, so Meta keeps one Purchase.
// Consent: it follows Shopify's Customer Privacy API (init.customerPrivacy, then
// visitorConsentCollected). While marketing is not allowed it sends nothing — no beacon, no fbq
// call — and every beacon says "consent": "granted". Without PIXEL_ID no Meta pixel is loaded.
// The sandbox posts cross-origin: add its Origin (often "null") to the Worker's ALLOWED_ORIGINS.
// The three settings below must say what the Worker's settings of the same names say
// (docs/privacy.md): this script cannot read them, and Meta's pixel gets them from here.
const CAPI_ENDPOINT = 'https://shop.example.com/t/e'; // your Worker route + /e
const PIXEL_ID = ''; // your Meta pixel id, to also send browser copies from checkout
const CUSTOMER_DATA = 'off'; // 'hashed': the buyer's contact fields go to the Worker, which hashes them
const LDU = 'off'; // 'on' | 'geo': Meta's Limited Data Use on every event
const GPC = 'ldu'; // 'drop' | 'ignore': what a Global Privacy Control signal does

// A Global Privacy Control signal, or the visitor's "do not sell or share" choice in Shopify's
// Customer Privacy API (saleOfDataAllowed false), unless the shop ignores them.
let gpc = (globalThis.navigator?.globalPrivacyControl === true || init.customerPrivacy?.saleOfDataAllowed === false) && GPC !== 'ignore';

function uuidv7() {
  const b = crypto.getRandomValues(new Uint8Array(16));
  const ms = Date.now();
  for (let i = 0; i < 6; i++) b[i] = Math.floor(ms / 2 ** (8 * (5 - i))) & 0xff;
  b[6] = (b[6] & 0x0f) | 0x70;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

// Shopify's visitor consent: marketing allowed → events go out (the pixel loads on first need).
let marketingAllowed = init.customerPrivacy?.marketingAllowed === true;
api.customerPrivacy?.subscribe('visitorConsentCollected', (event) => {
  marketingAllowed = event.customerPrivacy?.marketingAllowed === true;
  if (event.customerPrivacy?.saleOfDataAllowed === false && GPC !== 'ignore') gpc = true;
  if (PIXEL_ID && window.fbq) fbq('consent', marketingAllowed ? 'grant' : 'revoke');
});

// The Purchase event_id: "purchase:<order id>", trimmed, as capi_rules::event_id_for_order
// (Shopify's global id, gid://shopify/OrderIdentity/N, counts by its number N, if it has one).
function eventIdForOrder(orderId) {
  const id = String(orderId).trim();
  const last = id.slice(id.lastIndexOf('/') + 1);
  return `purchase:${id.startsWith('gid://shopify/') && last ? last : id}`;
}

// Meta's base code, installed only once marketing is allowed; consent is granted before init.
function loadPixel() {
  if (!PIXEL_ID || window.fbq) return;
  !function (f, b, e, v, n, t, s) { if (f.fbq) return; n = f.fbq = function () { n.callMethod ? n.callMethod.apply(n, arguments) : n.queue.push(arguments); };
    if (!f._fbq) f._fbq = n; n.push = n; n.loaded = !0; n.version = '2.0'; n.queue = []; t = b.createElement(e); t.async = !0; t.src = v;
    s = b.getElementsByTagName(e)[0]; s.parentNode.insertBefore(t, s); }(window, document, 'script', 'https://connect.facebook.net/en_US/fbevents.js');
  fbq('consent', 'grant');
  // Meta LDU, as the Worker marks its copies: [1, 1000] = California, [0, 0] = Meta geolocates.
  if (LDU === 'on') fbq('dataProcessingOptions', ['LDU'], 1, 1000);
  else if (LDU === 'geo' || gpc) fbq('dataProcessingOptions', ['LDU'], 0, 0);
  fbq('init', PIXEL_ID);
}

async function report(eventName, eventId, checkout, event) {
  if (!marketingAllowed || (gpc && GPC === 'drop')) return;
  loadPixel();
  const [fbp, fbc] = await Promise.all([browser.cookie.get('_fbp'), browser.cookie.get('_fbc')]);
  const customData = {
    value: Number(checkout.totalPrice?.amount ?? 0),
    currency: checkout.currencyCode,
    content_ids: (checkout.lineItems || []).map((li) => String(li.variant?.id ?? '')).filter(Boolean),
    content_type: 'product',
    num_items: (checkout.lineItems || []).reduce((n, li) => n + (li.quantity || 0), 0),
  };
  if (eventName === 'Purchase') customData.order_id = eventIdForOrder(checkout.order.id).slice('purchase:'.length);
  if (PIXEL_ID) fbq('track', eventName, customData, { eventID: eventId });
  const address = checkout.billingAddress || checkout.shippingAddress || {};
  const beacon = {
    event_name: eventName,
    event_id: eventId,
    event_source_url: event.context.document.location.href,
    event_time_ms: Date.now(),
    consent: 'granted',
    gpc: gpc || undefined,
    fbp: fbp || undefined,
    fbc: fbc || undefined,
    custom_data: customData,
    // Only with CUSTOMER_DATA = 'hashed', raw over HTTPS to your own Worker, which normalizes
    // and hashes them before anything leaves it.
    user_data: CUSTOMER_DATA !== 'hashed' ? undefined : {
      em: checkout.email || undefined, ph: checkout.phone || address.phone || undefined,
      fn: address.firstName || undefined, ln: address.lastName || undefined, ct: address.city || undefined,
      st: address.provinceCode || undefined, zp: address.zip || undefined, country: address.countryCode || undefined,
    },
  };
  fetch(CAPI_ENDPOINT, { method: 'POST', body: JSON.stringify(beacon), keepalive: true, credentials: 'omit' });
}

analytics.subscribe('checkout_started', (event) => report('InitiateCheckout', uuidv7(), event.data.checkout, event));
analytics.subscribe('payment_info_submitted', (event) => report('AddPaymentInfo', uuidv7(), event.data.checkout, event));
analytics.subscribe('checkout_completed', (event) => {
  const checkout = event.data.checkout;
  report('Purchase', eventIdForOrder(checkout.order.id), checkout, event);
});
