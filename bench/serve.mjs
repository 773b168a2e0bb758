// Starts the built Worker (workerd via Miniflare, with Queues and the ledger Durable Object) on
// 127.0.0.1 for the load benchmark, pointed at the Graph stand-in at SANDBOX_URL (or at a sandbox
// it starts itself); prints {"worker", "sandbox"} once ready and runs until killed.
// CUSTOMER_DATA=hashed: contact fields are normalized and hashed, as the DIY relay does.
import { startSandbox, startSplit, startWorker } from '../tests/integration/harness.mjs';

const sandbox = process.env.SANDBOX_URL ? { url: process.env.SANDBOX_URL, stop: () => {} } : await startSandbox();
// `direct`: wrk talks to the Worker's own socket in workerd, not through Miniflare's entry worker
// (a JS proxy that local dev puts in front of every request, ≈ 0.3 ms of CPU each on this
// machine, and that does not exist on Cloudflare). BENCH_ENTRY=miniflare measures through it.
// The rate limiter is still asked for every beacon, with a limit no run reaches: wrk sends from
// one address, and a faster Worker would otherwise meet the limiter's 60 s window mid-run.
// BENCH_LAYOUT=split: the split deployment instead (the beacon Worker on that socket, the whole
// Worker behind its binding; ARCHITECTURE.md, "Two Workers").
const vars = { META_GRAPH_URL: sandbox.url, CUSTOMER_DATA: 'hashed' };
const direct = process.env.BENCH_ENTRY !== 'miniflare';
const worker = process.env.BENCH_LAYOUT === 'split'
  ? await startSplit(vars, { direct, rateLimit: 100_000_000 })
  : await startWorker(vars, { direct, rateLimit: 100_000_000, batchSize: Number(process.env.BENCH_BATCH ?? 100) });
console.log(JSON.stringify({ worker: worker.url, sandbox: sandbox.url }));
// A sandbox started here runs in its own process group: stop it first, then give workerd 2 s.
const stop = () => {
  sandbox.stop();
  setTimeout(() => process.exit(0), 2000).unref();
  worker.stop().finally(() => process.exit(0));
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
setInterval(() => {}, 1 << 30);
