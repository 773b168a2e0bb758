// The baselines for `make bench`: a DIY Conversions API relay built the way a merchant would
// build one. Node `http` + Meta's `facebook-nodejs-business-sdk` (pinned in bench/package.json),
// answering 204 before anything is sent, then
// - one Graph POST per beacon (the default), or
// - with BATCH_MS=50, as a careful engineer writes it: events collected and sent in one
//   EventRequest every 50 ms, or as soon as 1,000 are waiting (Meta's limit per request). Not
//   durable: a crash loses what waits, nothing deduplicates or retries — a floor, not a peer.
//
//   META_GRAPH_URL=http://127.0.0.1:PORT [BATCH_MS=50] node bench/relay.mjs
//
// Listens on 127.0.0.1 (PORT env or a free port) and prints {"relay": URL} once ready.
// GET /stats answers {"accepted", "sent", "failed", "in_flight"}.
import http from 'node:http';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { FacebookAdsApi, EventRequest, ServerEvent, UserData, CustomData } = require('facebook-nodejs-business-sdk');

const PIXEL_ID = process.env.PIXEL_ID ?? '987654321012345';
const TOKEN = process.env.META_ACCESS_TOKEN ?? 'test-token-secret-value';
const GRAPH = process.env.META_GRAPH_URL;
if (!GRAPH) throw new Error('META_GRAPH_URL is required (the sandbox URL)');

// The SDK has no setting for its Graph base URL: `FacebookAdsApi.GRAPH` is a static getter that
// returns https://graph.facebook.com, and EventRequest.execute() builds its URL from it. Redefine
// that getter in this process (the installed package is not modified). Everything else is the
// SDK's default path: EventRequest → AdsPixel.createEvent → FacebookAdsApi.call → axios.
Object.defineProperty(FacebookAdsApi, 'GRAPH', { get: () => GRAPH, configurable: true });

const stats = { accepted: 0, sent: 0, failed: 0, in_flight: 0 };
const BATCH_MS = Number(process.env.BATCH_MS ?? 0);
const BATCH_MAX = 1000;
let waiting = [];
let timer = null;

/** Sends `events` in one EventRequest. */
function send(events) {
  stats.in_flight += events.length;
  return new EventRequest(TOKEN, PIXEL_ID)
    .setEvents(events)
    .execute()
    .then(() => { stats.sent += events.length; })
    .catch(() => { stats.failed += events.length; })
    .finally(() => { stats.in_flight -= events.length; });
}

function flush() {
  clearTimeout(timer);
  timer = null;
  const events = waiting;
  waiting = [];
  if (events.length) send(events);
}

function relay(beacon, req) {
  const u = beacon.user_data ?? {};
  const userData = new UserData()
    .setClientIpAddress(req.headers['cf-connecting-ip'] ?? req.socket.remoteAddress)
    .setClientUserAgent(req.headers['user-agent'] ?? '');
  if (u.em) userData.setEmail(u.em);
  if (u.ph) userData.setPhone(u.ph);
  if (u.fn) userData.setFirstName(u.fn);
  if (u.ln) userData.setLastName(u.ln);
  if (u.ct) userData.setCity(u.ct);
  if (u.st) userData.setState(u.st);
  if (u.zp) userData.setZip(u.zp);
  if (u.country) userData.setCountry(u.country);
  if (beacon.fbp) userData.setFbp(beacon.fbp);
  if (beacon.fbc) userData.setFbc(beacon.fbc);
  const c = beacon.custom_data ?? {};
  const customData = new CustomData();
  if (c.value != null) customData.setValue(c.value);
  if (c.currency) customData.setCurrency(String(c.currency).toLowerCase());
  if (Array.isArray(c.content_ids)) customData.setContentIds(c.content_ids);
  if (c.content_type) customData.setContentType(c.content_type);
  if (c.content_name) customData.setContentName(c.content_name);
  if (c.num_items != null) customData.setNumItems(c.num_items);
  const event = new ServerEvent()
    .setEventName(beacon.event_name)
    .setEventId(beacon.event_id)
    .setEventTime(Math.floor((beacon.event_time_ms ?? Date.now()) / 1000))
    .setEventSourceUrl(beacon.event_source_url)
    .setActionSource('website')
    .setUserData(userData)
    .setCustomData(customData);
  if (!BATCH_MS) return send([event]);
  waiting.push(event);
  if (waiting.length >= BATCH_MAX) flush();
  else if (!timer) timer = setTimeout(flush, BATCH_MS);
}

const server = http.createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/stats') {
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(stats));
    return;
  }
  if (req.method !== 'POST' || req.url !== '/t/e') {
    res.writeHead(404).end();
    return;
  }
  const chunks = [];
  req.on('data', (d) => chunks.push(d));
  req.on('end', () => {
    let beacon;
    try {
      beacon = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch {
      res.writeHead(400, { 'content-type': 'application/json' }).end('{"error":{"code":"bad_json","message":"body is not JSON"}}');
      return;
    }
    // Answer first, then relay: the browser never waits on Meta.
    res.writeHead(204).end();
    stats.accepted++;
    try {
      relay(beacon, req);
    } catch {
      stats.failed++;
    }
  });
});
server.listen(Number(process.env.PORT ?? 0), '127.0.0.1', () => {
  console.log(JSON.stringify({ relay: `http://127.0.0.1:${server.address().port}` }));
});
const stop = () => server.close(() => process.exit(0)) && setTimeout(() => process.exit(0), 1000).unref();
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
