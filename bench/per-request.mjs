// Per-request latency without wrk's coordinated-omission correction, for reading a system's
// stalls apart from its tail as `make bench` reports it (BENCHMARKS.md, "What the floor says
// about the tail"). Not part of `make bench`.
//   node bench/per-request.mjs URL [BEACONS=20000] [CONNECTIONS=1]
// Sends BEACONS beacons (bench/beacon.lua's shape, smaller) as POST /t/e over CONNECTIONS
// keep-alive connections, each waiting for its answer before the next, and prints p50, p90,
// p99, p99.9 and the longest, timed per request from the write to the end of the answer.
import http from 'node:http';

const url = new URL(process.argv[2]);
const n = Number(process.argv[3] ?? 20000);
const connections = Number(process.argv[4] ?? 1);
const agent = new http.Agent({ keepAlive: true, maxSockets: connections });
const body = JSON.stringify({
  event_name: 'AddToCart',
  event_id: `per-request-${process.pid}`,
  event_source_url: `${url.origin}/p`,
  custom_data: { value: 1, currency: 'EUR' },
  user_data: { em: 'jane.doe@example.com' },
  fbp: 'fb.1.1700000000000.1',
});
const headers = {
  'content-type': 'text/plain;charset=UTF-8',
  origin: url.origin,
  'cf-connecting-ip': '198.51.100.7',
  'user-agent': 'Mozilla/5.0 per-request',
  'content-length': Buffer.byteLength(body),
};
const latencies = [];
const one = () => new Promise((resolve, reject) => {
  const t0 = process.hrtime.bigint();
  const req = http.request({ host: url.hostname, port: url.port, path: '/t/e', method: 'POST', agent, headers }, (res) => {
    res.resume();
    res.on('end', () => {
      latencies.push(Number(process.hrtime.bigint() - t0) / 1e6);
      resolve();
    });
  });
  req.on('error', reject);
  req.end(body);
});
let sent = 0;
const t0 = Date.now();
await Promise.all(Array.from({ length: connections }, async () => {
  while (sent++ < n) await one();
}));
const s = latencies.sort((a, b) => a - b);
const p = (q) => s[Math.floor(q * (s.length - 1))].toFixed(2);
console.log(`${s.length} beacons over ${connections} connection(s), ${(s.length / ((Date.now() - t0) / 1000)).toFixed(0)}/s: ` +
  `p50 ${p(0.5)} p90 ${p(0.9)} p99 ${p(0.99)} p99.9 ${p(0.999)} longest ${p(1)} ms`);
agent.destroy();
