// Starts the sandbox and the built Worker (workerd via Miniflare, with Queues and the ledger
// Durable Object) on 127.0.0.1 for the load benchmark; prints the Worker URL, runs until killed.
import { startSandbox, startWorker } from '../tests/integration/harness.mjs';

const sandbox = await startSandbox();
const worker = await startWorker({ META_GRAPH_URL: sandbox.url });
console.log(JSON.stringify({ worker: worker.url, sandbox: sandbox.url }));
const stop = async () => { await worker.stop(); sandbox.stop(); process.exit(0); };
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
setInterval(() => {}, 1 << 30);
