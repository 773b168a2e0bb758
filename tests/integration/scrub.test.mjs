// Contact data inside custom_data, through the real Worker: every known-answer vector of the
// scrubber (core/tests/data/custom_data_scrub.json) is sent as a beacon in its privacy mode, and
// what Meta received is compared with the vector's answer. The raw values the vectors drop are
// then searched for in every Worker log line of the suite (zz-logs.test.mjs).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { ROOT, startSandbox, startWorker, eventually } from './harness.mjs';

const VECTORS = JSON.parse(readFileSync(`${ROOT}core/tests/data/custom_data_scrub.json`, 'utf8'));
let sandbox;
const workers = {};

before(async () => {
  sandbox = await startSandbox();
  for (const mode of ['off', 'hashed']) workers[mode] = await startWorker({ META_GRAPH_URL: sandbox.url, CUSTOMER_DATA: mode });
});
after(async () => { for (const w of Object.values(workers)) await w.stop(); sandbox?.stop(); });

test('every scrubber vector, sent as a beacon, reaches Meta as its known answer says', async () => {
  const sent = [];
  for (const [i, v] of VECTORS.entries()) {
    const w = workers[v.mode];
    const origin = new URL(w.url).origin;
    const event_id = `scrub-${i}`;
    const body = JSON.stringify({ event_name: 'ViewContent', event_id, event_source_url: `${origin}/p`, custom_data: v.custom_data });
    const r = await w.fetch('/t/e', { method: 'POST', body, headers: { origin, 'user-agent': 'Mozilla/5.0 scrub', 'content-type': 'text/plain', 'cf-connecting-ip': '198.51.100.3' } });
    assert.equal(r.status, 204, v.name);
    sent.push([event_id, v]);
  }
  const got = await eventually(async () => {
    const byId = new Map((await sandbox.events()).server.map((e) => [e.event_id, e]));
    return sent.every(([id]) => byId.has(id)) && byId;
  }, 60_000, 'every vector at Meta');
  for (const [id, v] of sent) {
    const e = got.get(id);
    assert.deepEqual(e.custom_data ?? {}, v.expect_custom_data, `${v.name}: custom_data as received`);
    for (const k of v.expect_user_data_keys ?? []) assert.match(String(e.user_data?.[k]), /^[0-9a-f]{64}$|^\["?[0-9a-f]{64}/, `${v.name}: ${k} hashed into user_data`);
  }
});
