// The beacon Worker of the split deployment (ARCHITECTURE.md, "Two Workers"), bundled by
// scripts/build-worker.sh with the crate built without its `backend` feature: what a page view
// wakes is this small Worker, not the whole one.
//
// It answers beacons (`POST /t/e`, worker/beacon.mjs: the same path, rules and queue as the
// whole Worker), the shim (`/t/p.js`, `/t/p.wasm`) and the beacon's CORS preflight itself, and
// forwards every other request unchanged (webhooks with their raw bodies, admin routes, the
// storefront's other paths) to the whole Worker through its `BACKEND` service binding. Batches
// the queue refuses go to that Worker's `deliverNow` over the same binding, to be delivered at
// once as its own would be. It holds no secret: it never calls Meta.
import { WorkerEntrypoint } from 'cloudflare:workers';
import * as wasm from './index.js';
import { beacon, checkReinitialize, handleMaybeCritical } from './beacon.mjs';

/** What the queue refused, delivered now by the whole Worker (RPC over the binding). */
const deliverThere = (env, messages, queueBound) => env.BACKEND.deliverNow(messages, queueBound);

/** Without the binding, nothing could be forwarded nor delivered: every request is refused,
 * before any beacon is answered as taken. */
const notBound = () =>
  Response.json(
    { error: { code: 'not_configured', message: 'the Worker is missing the BACKEND setting' } },
    { status: 503, headers: { 'cache-control': 'no-store' } },
  );

export default class BeaconWorker extends WorkerEntrypoint {
  async fetch(request) {
    if (!this.env.BACKEND) return notBound();
    checkReinitialize();
    try {
      if (request.method === 'POST') {
        const ticket = wasm.beaconGate(this.env, request.url, request.headers);
        if (ticket instanceof Response) return ticket;
        if (ticket !== undefined) return await beacon(request, ticket, this.env, this.ctx, deliverThere);
      } else {
        const answer = wasm.staticRoute(this.env, request);
        if (answer !== undefined) return answer;
      }
    } catch (e) {
      handleMaybeCritical(e);
      throw e;
    }
    return this.env.BACKEND.fetch(request);
  }
}
