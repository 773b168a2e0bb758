// Per-request latency without wrk's coordinated-omission correction, for reading a system's
// stalls apart from its tail as `make bench` reports it (BENCHMARKS.md, "What the floor says
// about the tail"). Not part of `make bench`.
//   node bench/per-request.mjs URL [BEACONS=20000] [CONNECTIONS=1]
// URL is a system on 127.0.0.1 (bench/floor.mjs, bench/serve.mjs, bench/relay.mjs). Sends
// BEACONS beacons (bench/beacon.lua's shape, smaller, each with a fresh event_id) as POST /t/e
// over CONNECTIONS keep-alive connections, each waiting for its answer before the next, and
// prints the answers' statuses and p50, p90, p99, p99.9 and the longest, timed per request from
// the write to the end of the answer. Each request gives up after 10 s, the whole run after 5 min.
import http from 'node:http';

const url = new URL(process.argv[2] ?? '');
const n = Number(process.argv[3] ?? 20000);
const connections = Number(process.argv[4] ?? 1);
if (url.hostname !== '127.0.0.1') {
  console.error('per-request: the system must listen on 127.0.0.1');
  process.exit(2);
}
setTimeout(() => {
  console.error('per-request: over 5 minutes, giving up');
  process.exit(2);
}, 300_000).unref();
const agent = new http.Agent({ keepAlive: true, maxSockets: connections });
const body = (seq) => JSON.stringify({
  event_name: 'AddToCart',
  event_id: `per-request-${process.pid}-${seq}`,
  event_source_url: `${url.origin}/p`,
  custom_data: { value: 1, currency: 'EUR' },
  user_data: { em: 'jane.doe@example.com' },
  fbp: 'fb.1.1700000000000.1',
});
const latencies = [];
const statuses = {};
const one = (seq) => new Promise((resolve) => {
  const text = body(seq);
  const headers = {
    'content-type': 'text/plain;charset=UTF-8',
    origin: url.origin,
    'cf-connecting-ip': '198.51.100.7',
    'user-agent': 'Mozilla/5.0 per-request',
    'content-length': Buffer.byteLength(text),
  };
  const t0 = process.hrtime.bigint();
  const req = http.request({ host: url.hostname, port: url.port, path: '/t/e', method: 'POST', agent, headers }, (res) => {
    res.resume();
    res.on('end', () => {
      latencies.push(Number(process.hrtime.bigint() - t0) / 1e6);
      statuses[res.statusCode] = (statuses[res.statusCode] ?? 0) + 1;
      resolve();
    });
  });
  req.setTimeout(10_000, () => req.destroy(new Error('timeout')));
  req.on('error', (e) => {
    const key = e.message === 'timeout' ? 'timeout' : 'error';
    statuses[key] = (statuses[key] ?? 0) + 1;
    resolve();
  });
  req.end(text);
});
let sent = 0;
const t0 = Date.now();
await Promise.all(Array.from({ length: connections }, async () => {
  while (sent < n) await one(++sent);
}));
agent.destroy();
if (latencies.length === 0) {
  console.error(`per-request: no answer (${JSON.stringify(statuses)})`);
  process.exit(1);
}
const s = latencies.sort((a, b) => a - b);
const p = (q) => s[Math.floor(q * (s.length - 1))].toFixed(2);
console.log(`${s.length} answers over ${connections} connection(s), ${(s.length / ((Date.now() - t0) / 1000)).toFixed(0)}/s, ` +
  `statuses ${JSON.stringify(statuses)}: p50 ${p(0.5)} p90 ${p(0.9)} p99 ${p(0.99)} p99.9 ${p(0.999)} longest ${p(1)} ms`);
