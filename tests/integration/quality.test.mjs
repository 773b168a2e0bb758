// `capi-edge quality` against the sandbox's emulation of Meta's Dataset Quality API: events of
// two names (one paired with browser copies, one server-only) and another pixel's, then the
// printed table and `--json` as a user reads them; the token only from the environment.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { startSandbox, cliPath, PIXEL_ID, TOKEN } from './harness.mjs';

const sha = (s) => createHash('sha256').update(s).digest('hex');
const UA = 'Mozilla/5.0 capi-edge-quality-test';
let sandbox;

before(async () => {
  sandbox = await startSandbox();
  const now = Math.floor(Date.now() / 1000);
  const event = (event_name, event_id, user_data) => ({ event_name, event_id, event_time: now - 5, action_source: 'website', event_source_url: 'https://shop.test/', user_data });
  const graph = async (pixel, data) => {
    const res = await fetch(`${sandbox.url}/v26.0/${pixel}/events`, { method: 'POST', body: JSON.stringify({ access_token: TOKEN, data }) });
    assert.equal(res.status, 200, await res.text());
  };
  await graph(PIXEL_ID, [
    // em, ph, a public IP and the user agent: 6.0 by capi_core::quality …
    event('AddToCart', 'a1', { em: sha('a@example.com'), ph: sha('4915112345678'), client_ip_address: '203.0.113.7', client_user_agent: UA }),
    // … external_id and the user agent (a private IP does not count): 1.5. Mean: 3.75 → 3.8.
    event('AddToCart', 'a2', { external_id: sha('c1'), client_ip_address: '10.0.0.1', client_user_agent: UA }),
    // em and the user agent: 3.5.
    event('Lead', 'l1', { em: sha('l@example.com'), client_user_agent: UA }),
  ]);
  await graph('111222333', [event('Search', 's1', { em: sha('s@example.com'), client_user_agent: UA })]);
  for (const event_id of ['a1', 'a3']) {
    await fetch(`${sandbox.url}/_sandbox/browser`, { method: 'POST', body: JSON.stringify({ method: 'track', event_name: 'AddToCart', event_id, params: {}, pixel_ids: [PIXEL_ID], url: 'https://shop.test/' }) });
  }
});
after(() => sandbox?.stop());

/** Runs `capi-edge quality …`; killed after 20 s. */
const quality = (args, env = { META_ACCESS_TOKEN: TOKEN }) => new Promise((resolve) => {
  execFile(cliPath(), ['quality', ...args], { env: { PATH: process.env.PATH, ...env }, timeout: 20_000 }, (err, stdout, stderr) => {
    resolve({ code: err ? err.code : 0, stdout, stderr });
  });
});

test('the table shows match quality, keys, coverage, dedup and freshness per event name', { timeout: 30_000 }, async () => {
  const { code, stdout, stderr } = await quality(['--pixel', PIXEL_ID, '--url', sandbox.url]);
  assert.equal(code, 0, stderr);
  const lines = stdout.split('\n');
  assert.equal(lines[0], `Dataset quality of pixel ${PIXEL_ID} — ${sandbox.url} (v26.0)`);
  assert.match(lines[1], /^note: An emulation by the capi-edge sandbox/);
  const header = lines.find((l) => l.startsWith('EVENT'));
  assert.match(header, /^EVENT\s+EMQ\s+EVENT COVERAGE\s+DEDUP \(browser \/ server → deduplicated\)\s+FRESHNESS$/);
  const cells = (name) => lines.find((l) => l.startsWith(`${name} `)).split(/\s{2,}/);
  // Two server copies for two browser copies; one of the two browser copies has its server copy.
  assert.deepEqual(cells('AddToCart'), ['AddToCart', '3.8 poor', '100% (goal 75%)', '100% / 100% → 50%', 'real_time']);
  assert.deepEqual(cells('Lead'), ['Lead', '3.5 poor', '—', '— / 100% → —', 'real_time']);
  const block = stdout.slice(stdout.indexOf('\nAddToCart'), stdout.indexOf('\nLead'));
  assert.match(block, /match keys {2}email 50%, phone 50%, external_id 50%, ip_address 50%, user_agent 100%\n/);
  assert.match(block, /diagnostic {2}Server sending unusable ip_address values: 50% of events \(1 of 2\)/);
  assert.match(block, /coverage {4}Sandbox emulation: 2 server copies of AddToCart for 2 browser copies; 1 of the 2 server copies have a browser copy/);
  assert.match(block, /freshness {3}Sandbox emulation: the last AddToCart arrived \d+ s ago/);
  assert.ok(!stdout.includes('Search'), 'another pixel’s events are not this pixel’s');
});

test('--json prints Meta-shaped JSON with only the fields the command asks for', { timeout: 30_000 }, async () => {
  const { code, stdout, stderr } = await quality(['--pixel', PIXEL_ID, '--url', sandbox.url, '--json']);
  assert.equal(code, 0, stderr);
  const body = JSON.parse(stdout);
  const add = body.web.find((e) => e.event_name === 'AddToCart');
  assert.equal(add.event_match_quality.composite_score, 3.8);
  assert.deepEqual(add.event_match_quality.match_key_feedback.find((k) => k.identifier === 'email'), { identifier: 'email', coverage: { percentage: 50 } });
  assert.deepEqual(Object.keys(add.dedupe_key_feedback[0]).sort(),
    ['browser_events_with_dedupe_key', 'dedupe_key', 'overall_browser_coverage_from_dedupe_key', 'server_events_with_dedupe_key']);
  assert.deepEqual(add.dedupe_key_feedback[0].overall_browser_coverage_from_dedupe_key, { percentage: 50 }, 'sub-fields as asked: percentage only');
  assert.equal(add.data_freshness.upload_frequency, 'real_time');
  assert.equal(add.event_coverage.goal_percentage, 75);
  assert.deepEqual(body.web.map((e) => e.event_name).sort(), ['AddToCart', 'Lead']);
});

test('the token comes from the environment only', { timeout: 30_000 }, async () => {
  const missing = await quality(['--pixel', PIXEL_ID, '--url', sandbox.url], {});
  assert.equal(missing.code, 2);
  assert.equal(missing.stdout, '');
  assert.match(missing.stderr, /set META_ACCESS_TOKEN/);
  const flag = await quality(['--pixel', PIXEL_ID, '--url', sandbox.url, '--token', TOKEN]);
  assert.equal(flag.code, 2);
  assert.match(flag.stderr, /--token is not taken: the token comes from the environment/);
  const other = await quality(['--pixel', PIXEL_ID, '--url', sandbox.url, '--token-env', 'MY_META_TOKEN'], { MY_META_TOKEN: TOKEN });
  assert.equal(other.code, 0, other.stderr);
  const empty = await quality(['--pixel', '444', '--url', sandbox.url]);
  assert.equal(empty.code, 0, empty.stderr);
  assert.match(empty.stdout, /^no events: /m);
  const bad = await quality(['--pixel', 'abc', '--url', sandbox.url]);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--pixel must be the pixel \(dataset\) id/);
});
