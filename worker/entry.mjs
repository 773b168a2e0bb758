// The whole Worker's entry module (bundled with wasm-bindgen's output by
// scripts/build-worker.sh).
//
// Everything the Worker decides is Rust (worker/src, capi-core). `POST /t/e` takes the beacon
// path of worker/beacon.mjs (I/O only: Rust decides through two synchronous calls); every other
// route, the queue consumer and the ledger Durable Object go straight to the Rust handlers.
import { WorkerEntrypoint } from 'cloudflare:workers';
import * as wasm from './index.js';
import { beacon, checkReinitialize, handleMaybeCritical, initState } from './beacon.mjs';

/** What the queue refused, delivered now in this isolate (Rust's delivery path). */
const deliverHere = (env, messages, queueBound) => wasm.deliverNow(env, messages, queueBound);

export default class Worker extends WorkerEntrypoint {
  async fetch(request) {
    checkReinitialize();
    try {
      if (request.method === 'POST') {
        const ticket = wasm.beaconGate(this.env, request.url, request.headers);
        if (ticket instanceof Response) return ticket;
        if (ticket !== undefined) return await beacon(request, ticket, this.env, this.ctx, deliverHere);
      }
      return await wasm.fetch(request, this.env, this.ctx);
    } catch (e) {
      handleMaybeCritical(e);
      throw e;
    }
  }

  /** RPC for the beacon Worker of the split deployment (its `BACKEND` binding): queue
   * messages its queue refused, delivered now by this Worker, as its own would be. Reachable
   * only through a service binding, never over HTTP. */
  async deliverNow(messages, queueBound) {
    checkReinitialize();
    try {
      await deliverHere(this.env, messages, queueBound);
    } catch (e) {
      handleMaybeCritical(e);
      throw e;
    }
  }

  async queue(batch) {
    checkReinitialize();
    try {
      return await wasm.queue(batch, this.env, this.ctx);
    } catch (e) {
      handleMaybeCritical(e);
      throw e;
    }
  }
}

/** The ledger Durable Object (Rust), re-created after a wasm re-initialization. */
export class Ledger {
  constructor(state, env) {
    this.args = [state, env];
    this.make();
  }

  make() {
    this.inner = new wasm.Ledger(...this.args);
    this.instanceId = initState.instanceId;
  }

  async run(call) {
    checkReinitialize();
    if (this.instanceId !== initState.instanceId) this.make();
    try {
      return await call(this.inner);
    } catch (e) {
      handleMaybeCritical(e);
      throw e;
    }
  }

  fetch(request) {
    return this.run((ledger) => ledger.fetch(request));
  }

  alarm() {
    return this.run((ledger) => ledger.alarm());
  }
}
