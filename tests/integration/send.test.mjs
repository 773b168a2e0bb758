// `capi-edge send` against the sandbox: a 10,000-row CSV export with bad rows mixed in, counted
// at the sandbox — every good row arrives exactly once, no bad row does, a second upload sends
// nothing, a run killed mid-upload resumes without sending anything twice; JSON Lines input;
// `--dry-run` sends nothing and prints hashed payloads only.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, writeFileSync, readFileSync, existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startSandbox, eventually, cliPath, PIXEL_ID, TOKEN, HASHED_KEYS, isSha256 } from './harness.mjs';

const NOW = Math.floor(Date.now() / 1000);
const DAY = 86_400;
const sha256 = (s) => createHash('sha256').update(s).digest('hex');

let sandbox;
let dir;
// Every `capi-edge send` this file started is killed (whole process group) when it exits.
const running = new Set();
const killGroup = (pid) => { try { process.kill(-pid, 'SIGKILL'); } catch {} };
process.on('exit', () => running.forEach(killGroup));

before(async () => {
  sandbox = await startSandbox();
  dir = mkdtempSync(join(tmpdir(), 'capi-send-'));
});
after(() => {
  sandbox?.stop();
  running.forEach(killGroup);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** Starts `capi-edge send …`; `done` resolves to { code, signal, stdout, stderr } (killed after `ms`). */
function start(args, { env = { META_ACCESS_TOKEN: TOKEN }, ms = 30_000 } = {}) {
  const child = spawn(cliPath(), ['send', ...args], {
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { PATH: process.env.PATH, ...env },
  });
  running.add(child.pid);
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => { stdout += d; });
  child.stderr.on('data', (d) => { stderr += d; });
  const done = new Promise((resolve, reject) => {
    const timer = setTimeout(() => { killGroup(child.pid); reject(new Error(`capi-edge send took over ${ms} ms:\n${stderr}`)); }, ms);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      running.delete(child.pid);
      resolve({ code, signal, stdout, stderr });
    });
  });
  return { child, done };
}
const send = (args, opts) => start(args, opts).done;
const sandboxArgs = (file, ...more) => [file, '--pixel', PIXEL_ID, '--url', sandbox.url, ...more];

/** The summary's numbers: `sent`, `already sent`, `skipped`, `rejected by Meta`, and per skip reason. */
function summaryOf(stderr) {
  const n = (label) => Number(stderr.match(new RegExp(`^  ${label}\\s+(\\d+)`, 'm'))?.[1]);
  const reasons = {};
  for (const m of stderr.matchAll(/^ {4}([a-z_]+)\s+(\d+)\s/gm)) reasons[m[1]] = Number(m[2]);
  return { sent: n('(?:sent|would send)'), already: n('already sent'), skipped: n('skipped'), rejected: n('rejected by Meta'), reasons };
}

// The export: 20 kinds of row in turn. `key` is what identifies a row at the sandbox (its
// order_id or lead_id); `bad` names the reason a row must be skipped.
const KINDS = [
  { kind: 'store' },
  { kind: 'store_30_days' }, // only Meta's 62-day window for physical_store lets it through
  { kind: 'phone_call_iso' },
  { kind: 'lead' },
  { kind: 'store' },
  { kind: 'prehashed' },
  { kind: 'explicit_id' },
  { kind: 'email_that_normalizes_to_nothing', bad: 'user_data_missing' },
  { kind: 'store' },
  { kind: 'store_70_days', bad: 'event_time_too_old' },
  { kind: 'store' },
  { kind: 'unknown_action_source', bad: 'action_source_invalid' },
  { kind: 'phone_call_iso' },
  { kind: 'phone_call_10_days', bad: 'event_time_too_old' },
  { kind: 'store' },
  { kind: 'value_without_currency', bad: 'value_without_currency' },
  { kind: 'lead' },
  { kind: 'time_not_a_time', bad: 'event_time_invalid' },
  { kind: 'store' },
  { kind: 'duplicate_of_previous', bad: 'duplicate_event_id' },
];
const HEADER = ['event_name', 'event_time', 'E-Mail', 'phone_number', 'First Name', 'ln', 'zip', 'country', 'action_source', 'value', 'currency', 'order_id', 'lead_id', 'event_id', 'notes'];
/** Event ids the sandbox rejects (its `reject_event_ids` fault): rows Meta refuses after all. */
const REFUSED = ['pos-6', 'pos-2006', 'pos-9006'];

function row(i) {
  const { kind } = KINDS[i % KINDS.length];
  const r = {
    event_name: 'Purchase', event_time: String(NOW - DAY - i), 'E-Mail': `Customer.${i}@Example.COM`,
    phone_number: `(650) 555-${String(i % 10_000).padStart(4, '0')}`, 'First Name': 'Mary-Ann', ln: "O'Brien",
    zip: '94107-1234', country: 'US', action_source: '', value: (i % 97) + 0.5, currency: 'usd',
    order_id: `O-${i}`, lead_id: '', event_id: '', notes: 'paid "cash", thanks\nsecond line',
  };
  switch (kind) {
    case 'store_30_days': r.event_time = String(NOW - 30 * DAY); break;
    case 'phone_call_iso': r.action_source = 'phone_call'; r.event_time = new Date((NOW - 2 * DAY) * 1000).toISOString(); break;
    case 'lead': Object.assign(r, { event_name: 'Lead', value: '', currency: '', order_id: '', lead_id: `L-${i}`, action_source: 'system_generated' }); break;
    case 'prehashed': r['E-Mail'] = sha256(`customer.${i}@example.com`).toUpperCase(); r.phone_number = ''; break;
    case 'explicit_id': r.event_id = `pos-${i}`; break;
    case 'email_that_normalizes_to_nothing': Object.assign(r, { 'E-Mail': 'not an email', phone_number: '', 'First Name': '', ln: '', zip: '', country: '', event_name: 'Lead', value: '', currency: '' }); break;
    case 'store_70_days': r.event_time = String(NOW - 70 * DAY); break;
    case 'unknown_action_source': r.action_source = 'store'; break;
    case 'phone_call_10_days': r.action_source = 'phone_call'; r.event_time = String(NOW - 10 * DAY); break;
    case 'value_without_currency': r.currency = ''; break;
    case 'time_not_a_time': r.event_time = 'yesterday afternoon'; break;
    default: break;
  }
  return r;
}

/** The CSV (quoted cells with commas, quotes and newlines) and what must happen to each row. */
function makeExport(rows) {
  const cell = (v) => (/[",\n]/.test(String(v)) ? `"${String(v).replaceAll('"', '""')}"` : String(v));
  const lines = [HEADER.join(',')];
  const good = new Set();
  const bad = new Set();
  const reasons = {};
  let previous;
  for (let i = 0; i < rows; i++) {
    const spec = KINDS[i % KINDS.length];
    const r = spec.kind === 'duplicate_of_previous' ? previous : row(i);
    lines.push(HEADER.map((h) => cell(r[h])).join(','));
    const key = r.order_id || r.lead_id;
    if (spec.bad) {
      reasons[spec.bad] = (reasons[spec.bad] ?? 0) + 1;
      if (spec.kind !== 'duplicate_of_previous') bad.add(key);
    } else {
      good.add(key);
    }
    previous = r;
  }
  return { csv: `${lines.join('\r\n')}\r\n`, good, bad, reasons };
}

const keyOf = (e) => e.custom_data?.order_id ?? e.user_data?.lead_id;
async function arrivals() {
  const counts = new Map();
  for (const e of (await sandbox.events()).server) counts.set(keyOf(e), (counts.get(keyOf(e)) ?? 0) + 1);
  return counts;
}
const stateLines = (path) => (existsSync(path) ? readFileSync(path, 'utf8').split('\n').filter(Boolean).length : 0);

const ROWS = 10_000;
const file = () => join(dir, 'store-sales.csv');
let exported;

test('10,000 rows with bad ones mixed in: every good row arrives exactly once, no bad row, the summary says why', async () => {
  exported = makeExport(ROWS);
  writeFileSync(file(), exported.csv);
  await sandbox.reset();
  await sandbox.faults({ reject_event_ids: REFUSED });
  const started = Date.now();
  const { code, stderr } = await send(sandboxArgs(file()));
  assert.equal(code, 0, stderr);
  const counts = await arrivals();
  const expected = [...exported.good].filter((k) => !REFUSED.includes(`pos-${k.slice(2)}`));
  assert.equal(expected.length, exported.good.size - REFUSED.length);
  const missing = expected.filter((k) => counts.get(k) !== 1);
  assert.deepEqual(missing.slice(0, 5), [], `${missing.length} good rows not there exactly once`);
  const leaked = [...exported.bad].filter((k) => counts.has(k));
  assert.deepEqual(leaked.slice(0, 5), [], 'bad rows reached the sandbox');
  const events = (await sandbox.events()).server;
  assert.equal(events.length, expected.length, 'nothing else arrived');
  // Only hashes left the machine.
  const body = JSON.stringify(events);
  assert.ok(!/@|customer\.\d|mary|brien|paid/i.test(body), 'raw contact data (or an unknown column) reached the sandbox');
  for (const e of events) for (const k of HASHED_KEYS) if (e.user_data[k] !== undefined) assert.ok(isSha256(e.user_data[k]), `${k} not hashed`);
  const store = events.find((e) => e.custom_data?.order_id === 'O-0');
  assert.equal(store.action_source, 'physical_store', '--action-source defaults to physical_store');
  assert.equal(store.user_data.em, sha256('customer.0@example.com'));
  assert.equal(store.user_data.zp, sha256('94107'));
  assert.equal(events.find((e) => e.custom_data?.order_id === 'O-5').user_data.em, sha256('customer.5@example.com'), 'hashed values pass through');
  assert.ok(events.every((e) => e._sandbox.token_in_url === false), 'the token travels in the body');
  assert.ok(events.every((e) => (e.event_id.startsWith('offline:') && e.event_id.length === 40) || e.event_id.startsWith('pos-')));

  const s = summaryOf(stderr);
  assert.equal(s.sent, expected.length, stderr);
  assert.equal(s.already, 0);
  assert.equal(s.rejected, REFUSED.length, stderr);
  assert.deepEqual(s.reasons, exported.reasons, stderr);
  assert.equal(s.skipped, Object.values(exported.reasons).reduce((a, b) => a + b, 0));
  // A row spans two lines of the file (its notes hold a newline): row i starts on line 2 + 2i.
  assert.match(stderr, /rejected by the sandbox's reject_event_ids fault \(code 100; lines 14, 4014, 18014\)/);
  assert.match(stderr, /not read \(no such field\): notes/);
  assert.ok(!/@|customer\.\d|Mary/i.test(stderr), 'the summary shows no contact data');
  assert.equal(stateLines(`${file()}.capi-state`), expected.length, 'the state file holds what Meta acknowledged');
  assert.ok(Date.now() - started < 20_000, `took ${Date.now() - started} ms`);
});

test('the same file again sends nothing new', async () => {
  const before = (await sandbox.events()).server.length;
  const { code, stderr } = await send(sandboxArgs(file()));
  assert.equal(code, 0, stderr);
  const s = summaryOf(stderr);
  assert.equal(s.sent, 0, stderr);
  // The duplicate rows share their event id with a row the state file holds.
  assert.equal(s.already, exported.good.size - REFUSED.length + exported.reasons.duplicate_event_id, stderr);
  assert.equal(s.rejected, REFUSED.length, 'what Meta refused is tried again, and refused again');
  assert.equal((await sandbox.events()).server.length, before, 'the sandbox received nothing new');
});

test('a run killed after some acknowledged batches resumes: every row arrives exactly once in all', async () => {
  await sandbox.reset();
  const state = join(dir, 'cut.capi-state');
  // Each request takes 150 ms, so the run is still going when it is cut.
  await sandbox.faults({ latency_ms: 150 });
  const run = start(sandboxArgs(file(), '--state', state, '--batch-size', '400', '--max-attempts', '20'));
  await eventually(() => stateLines(state) >= 1200, 20_000, 'three batches acknowledged');
  // Meta goes down; once a request has failed, every acknowledged batch is in the state file.
  await sandbox.faults({ down: true });
  await eventually(async () => (await sandbox.events()).summary.injected_faults > 0, 10_000, 'a failed request');
  killGroup(run.child.pid);
  const cut = await run.done;
  assert.equal(cut.signal, 'SIGKILL');
  const firstRun = stateLines(state);
  assert.ok(firstRun >= 1200 && firstRun < exported.good.size, `cut after ${firstRun} events`);
  assert.equal((await sandbox.events()).server.length, firstRun, 'what arrived is what the state file holds');

  await sandbox.faults({});
  const { code, stderr } = await send(sandboxArgs(file(), '--state', state, '--batch-size', '400'));
  assert.equal(code, 0, stderr);
  assert.equal(summaryOf(stderr).sent + firstRun, exported.good.size, 'the second run sent only what the first had not');
  const counts = await arrivals();
  const twice = [...counts].filter(([, n]) => n !== 1);
  assert.deepEqual(twice.slice(0, 5), [], 'an event arrived twice');
  assert.equal(counts.size, exported.good.size, 'every good row (no fault refuses any now) arrived');
  for (const k of exported.good) assert.equal(counts.get(k), 1, k);
});

test('JSON Lines, flat or in Meta\'s shape; contents items without an id are refused', async () => {
  await sandbox.reset();
  const lines = [];
  for (let i = 0; i < 200; i++) {
    const t = NOW - 3600 - i;
    if (i % 4 === 0) lines.push({ event_name: 'Purchase', event_time: t, user_data: { em: `j${i}@example.org`, country: 'DE' }, custom_data: { value: 20, currency: 'EUR', order_id: `J-${i}`, contents: [{ id: 'sku-1', quantity: 2, title: 'kept out' }] } });
    else if (i % 4 === 1) lines.push({ event_name: 'Purchase', event_time: new Date(t * 1000).toISOString(), email: `j${i}@example.org`, phone: '030 1234567', country: 'Germany', value: '9.90', currency: 'eur', order_id: `J-${i}`, content_ids: ['a', 7] });
    else if (i % 4 === 2) lines.push({ event_name: 'Purchase', event_time: t, email: `j${i}@example.org`, value: 5, currency: 'EUR', order_id: `J-${i}`, contents: [{ quantity: 1 }] });
    else lines.push({ event_name: 'Contact', event_time: t, action_source: 'chat', external_id: `crm-${i}`, order_id: `J-${i}` });
  }
  const path = join(dir, 'crm.jsonl');
  // As PowerShell 5 writes UTF-8: a byte order mark before the first row.
  writeFileSync(path, `\u{feff}${lines.map((l) => JSON.stringify(l)).join('\n')}\n\nnot json\n`);
  const { code, stderr } = await send(sandboxArgs(path));
  assert.equal(code, 0, stderr);
  const s = summaryOf(stderr);
  assert.equal(s.sent, 150, stderr);
  assert.deepEqual(s.reasons, { contents_item_missing_id: 50, malformed_row: 1 }, stderr);
  const events = (await sandbox.events()).server;
  assert.equal(events.length, 150);
  assert.ok(events.every((e) => !JSON.stringify(e).includes('@')));
  const j0 = events.find((e) => e.custom_data.order_id === 'J-0');
  assert.deepEqual(j0.custom_data.contents, [{ id: 'sku-1', quantity: 2 }]);
  assert.equal(j0.user_data.country, sha256('de'));
  const j1 = events.find((e) => e.custom_data.order_id === 'J-1');
  assert.equal(j1.user_data.ph, sha256('49301234567'), 'a national number in the row\'s country');
  assert.deepEqual(j1.custom_data.content_ids, ['a', '7']);
  assert.equal(events.find((e) => e.custom_data.order_id === 'J-3').action_source, 'chat');

  // The sandbox holds senders to the same rule (Meta, since April 2026).
  const event = { ...events[0], event_id: 'no-id-item', custom_data: { value: 1, currency: 'EUR', contents: [{ quantity: 1 }] } };
  delete event._sandbox;
  const res = await fetch(`${sandbox.url}/v26.0/${PIXEL_ID}/events`, { method: 'POST', body: JSON.stringify({ data: [event], access_token: TOKEN }) });
  assert.equal(res.status, 400);
  const err = (await res.json()).error;
  assert.equal(err.error_user_title, 'contents_item_missing_id');
  assert.equal(err.error_user_msg, 'data[0]: custom_data.contents[0] has no id');
});

test('--dry-run sends nothing and prints hashed request bodies, one per batch', async () => {
  await sandbox.reset();
  const state = join(dir, 'dry.capi-state');
  const { code, stdout, stderr } = await send(sandboxArgs(file(), '--state', state, '--dry-run', '--test-event-code', 'TEST4242'), { env: {} });
  assert.equal(code, 0, stderr);
  // The process has exited: anything it sent would be recorded by now.
  const view = await sandbox.events();
  assert.equal(view.server.length, 0);
  assert.equal(view.summary.rejected_requests, 0);
  assert.ok(!existsSync(state), 'a dry run writes no state');
  const bodies = stdout.trim().split('\n').map((l) => JSON.parse(l));
  assert.equal(bodies.length, Math.ceil(exported.good.size / 1000));
  assert.ok(bodies.every((b) => b.data.length <= 1000 && b.test_event_code === 'TEST4242' && b.partner_agent === 'capi-edge' && !('access_token' in b)));
  assert.equal(bodies.reduce((n, b) => n + b.data.length, 0), exported.good.size);
  assert.ok(!/@|customer\.\d|mary|brien/i.test(stdout), 'plain contact data in the payloads');
  for (const b of bodies) for (const e of b.data) for (const k of HASHED_KEYS) if (e.user_data[k] !== undefined) assert.ok(isSha256(e.user_data[k]));
  assert.equal(summaryOf(stderr).sent, exported.good.size);
  assert.match(stderr, /dry run, nothing sent/);
});

test('bad input gets a clear error, never a panic, and never echoes the file', async () => {
  const path = (name, text) => { const p = join(dir, name); writeFileSync(p, text); return p; };
  const refused = async (args, expected, env) => {
    const { code, stdout, stderr } = await send(args, env && { env });
    assert.equal(code, 2, `${args.join(' ')}: ${stderr}`);
    assert.match(stderr, expected);
    assert.ok(!/panicked|RUST_BACKTRACE/.test(stderr), stderr);
    assert.ok(!/jane|@/i.test(stderr + stdout), 'the file is not echoed');
    return stderr;
  };
  await sandbox.reset();
  const headerless = path('headerless.csv', `jane@example.com,${NOW},Purchase\n`);
  await refused(sandboxArgs(headerless), /the first row must be a header/);
  await refused(sandboxArgs(path('twice.csv', `email,E-Mail,event_time,event_name\njane@example.com,x@y.z,${NOW},Lead\n`)), /"email" and "E-Mail" both hold em/);
  await refused(sandboxArgs(path('no-time.csv', 'email,event_name\njane@example.com,Lead\n')), /no event_time column/);
  const good = path('one.csv', `email,event_time,event_name\njane@example.com,${NOW - 60},Lead\n`);
  await refused(sandboxArgs(good), /set META_ACCESS_TOKEN/, {});
  await refused([...sandboxArgs(good), '--token', 'secret-on-the-command-line'], /environment only/);
  await refused(sandboxArgs(good, '--state', headerless), /not a capi-edge send record/);
  assert.equal(readFileSync(headerless, 'utf8'), `jane@example.com,${NOW},Purchase\n`, 'a wrong --state is left as it was');
  // A dry run's --out is created empty: never over the input (nor the state file it resumes).
  const goodText = readFileSync(good, 'utf8');
  await refused(sandboxArgs(good, '--dry-run', '--out', good), /--out must not be the input file/);
  assert.equal(readFileSync(good, 'utf8'), goodText, 'the input is left as it was');
  // A secret given as --flag=value is refused and never repeated back, nor sent in clear.
  const err = await refused([...sandboxArgs(good), '--access-token=EAABsecret-value'], /environment only/);
  assert.ok(!err.includes('EAABsecret-value'));
  await refused(sandboxArgs(good).map((a) => (a === sandbox.url ? 'http://graph.facebook.com' : a)), /--url must start with https:\/\//);
  await refused(sandboxArgs(path('sales.xlsx', 'PK')), /pass --format csv or --format jsonl/);
  await refused(sandboxArgs(good, '--action-source', 'store'), /--action-source must be one of Meta's values/);
  await refused(sandboxArgs(join(dir, 'missing.csv')), /missing\.csv: No such file/);
  // Two runs of one file at once: the second is refused while the first holds the state file
  // (the first is waiting to retry a failed request: it has read the state file by then).
  await sandbox.faults({ fail_next: 1, kinds: ['500'] });
  const first = start(sandboxArgs(good));
  await eventually(async () => (await sandbox.events()).summary.injected_faults > 0, 5_000, 'the first run to send');
  await refused(sandboxArgs(good), /in use by another capi-edge send/);
  assert.equal((await first.done).code, 0);
  await sandbox.faults({});
  assert.equal((await sandbox.events()).server.length, 1, 'sent once');
});
