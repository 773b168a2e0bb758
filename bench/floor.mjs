// The runtime's floor for `make bench`: the smallest Worker that takes a beacon, in its own
// workerd process through Miniflare (the versions bench/serve.mjs runs the Worker on), on its
// own socket. It reads the origin and the body and answers 204 with the CORS header, and does
// nothing else: no wasm, no queue, no ledger, nothing relayed. What it costs is what any Worker
// pays per beacon on this runtime: its beacons/s bound the Worker's, and its tail shows the
// runtime's own stalls. Prints {"floor": url} once ready and runs until killed.
import { Miniflare } from 'miniflare';

const script = `
export default {
  async fetch(request) {
    const origin = request.headers.get('origin');
    const body = await request.arrayBuffer();
    if (request.method !== 'POST' || body.byteLength === 0) return new Response(null, { status: 400 });
    return new Response(null, { status: 204, headers: { 'access-control-allow-origin': origin ?? '*' } });
  },
};`;
const mf = new Miniflare({
  modules: true,
  script,
  compatibilityDate: '2026-04-01',
  host: '127.0.0.1',
  port: 0,
  unsafeDirectSockets: [{ host: '127.0.0.1', port: 0 }],
});
await mf.ready;
const url = (await mf.unsafeGetDirectURL()).toString().replace(/\/$/, '');
console.log(JSON.stringify({ floor: url }));
const stop = () => {
  setTimeout(() => process.exit(0), 2000).unref();
  mf.dispose().finally(() => process.exit(0));
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
setInterval(() => {}, 1 << 30);
