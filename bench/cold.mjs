// Cold start of what a page view wakes, per layout: from asking for a fresh runtime to the first
// beacon it answers (workerd reads the bundle, compiles and instantiates the wasm, evaluates the
// entry module, then the first request's own work), on COLD_STARTS fresh runtimes each.
//
//   whole    the whole Worker alone, as wrangler.toml deploys it;
//   beacons  the beacon Worker of the split deployment (ARCHITECTURE.md, "Two Workers"), its
//            BACKEND a function of this process that no beacon reaches: on Cloudflare the whole
//            Worker behind it starts in isolates of its own, when a webhook or the queue wakes it.
//
// Every runtime answers on its own socket (no Miniflare proxy) and is disposed before the next;
// run by bench/run.mjs in its own process group. Prints one JSON line: {"cold": {layout: [ms]},
// "ready": {layout: [ms]}} (the second: until the runtime listened, before the first beacon).
import { Miniflare } from 'miniflare';
import { builtWorker as built, EVENTS_QUEUE, DEAD_LETTERS_QUEUE } from '../tests/integration/harness.mjs';

const RUNS = Number(process.env.COLD_STARTS ?? 5);
const settings = { PIXEL_ID: '987654321012345', CUSTOMER_DATA: 'hashed', META_GRAPH_URL: 'http://127.0.0.1:9' };
const limiter = { BEACON_RATE_LIMITER: { simple: { limit: 1000, period: 60 } } };
const socket = { unsafeDirectSockets: [{ host: '127.0.0.1', port: 0 }] };
const layouts = {
  whole: () => ({
    ...built('worker'), ...socket,
    bindings: { ...settings, META_ACCESS_TOKEN: 'token' },
    ratelimits: limiter,
    durableObjects: { LEDGER: { className: 'Ledger', useSQLite: true } },
    queueProducers: { EVENTS: EVENTS_QUEUE, DEAD_LETTERS: DEAD_LETTERS_QUEUE },
  }),
  beacons: () => ({
    name: 'capi-edge-beacons', ...built('beacons'), ...socket, bindings: settings, ratelimits: limiter,
    queueProducers: { EVENTS: EVENTS_QUEUE }, serviceBindings: { BACKEND: () => new Response(null, { status: 503 }) },
  }),
};

// Interleaved (whole, beacons, whole, …), so that a busier moment of the machine is shared.
const cold = Object.fromEntries(Object.keys(layouts).map((name) => [name, []]));
const ready = Object.fromEntries(Object.keys(layouts).map((name) => [name, []]));
for (let i = 0; i < RUNS; i++) {
  for (const [name, config] of Object.entries(layouts)) {
    const t0 = performance.now();
    const mf = new Miniflare({ host: '127.0.0.1', port: 0, ...config() });
    try {
      await mf.ready;
      ready[name].push(performance.now() - t0);
      const url = (await mf.unsafeGetDirectURL()).toString().replace(/\/$/, '');
      const res = await fetch(`${url}/t/e`, {
        method: 'POST',
        headers: { 'content-type': 'text/plain;charset=UTF-8', origin: url, 'cf-connecting-ip': '198.51.100.7', 'user-agent': 'Mozilla/5.0 bench' },
        body: JSON.stringify({ event_name: 'PageView', event_id: `cold-${name}-${i}`, event_source_url: `${url}/`, fbp: 'fb.1.1700000000000.1' }),
      });
      await res.arrayBuffer();
      if (res.status !== 204) throw new Error(`${name}: the first beacon got ${res.status}`);
      cold[name].push(performance.now() - t0);
    } finally {
      await mf.dispose();
    }
  }
}
console.log(JSON.stringify({ cold, ready }));
