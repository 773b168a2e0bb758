// Starts the sandbox and the built Worker (workerd via Miniflare, with Queues and the ledger
// Durable Object) on 127.0.0.1 for the load benchmark; prints the Worker URL, runs until killed.
import { startSandbox, startWorker } from '../tests/integration/harness.mjs';

const sandbox = await startSandbox();
const worker = await startWorker({ META_GRAPH_URL: sandbox.url });
console.log(JSON.stringify({ worker: worker.url, sandbox: sandbox.url }));
// The sandbox runs in its own process group: stop it first, then give workerd 2 s to go.
const stop = () => {
  sandbox.stop();
  setTimeout(() => process.exit(0), 2000).unref();
  worker.stop().finally(() => process.exit(0));
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
setInterval(() => {}, 1 << 30);
