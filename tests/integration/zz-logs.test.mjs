// Runs last, alone (`make integration` starts it after the other files): every line the Worker
// logged during the whole suite — beacons, webhooks, hostile input, privacy modes, tenants —
// holds no raw customer data: no email address, phone number, IP address or name the tests
// sent, and no secret. The suite's inputs are known, so their raw values are what is searched for.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { LOG_FILE, TOKEN, ADMIN_TOKEN, ROOT } from './harness.mjs';

/** Every string the scrubber's vectors drop from custom_data (scrub.test.mjs sent them all). */
function scrubbedValues() {
  const vectors = JSON.parse(readFileSync(`${ROOT}core/tests/data/custom_data_scrub.json`, 'utf8'));
  const strings = (v) => (typeof v === 'string' ? [v] : v && typeof v === 'object' ? Object.values(v).flatMap(strings) : []);
  const kept = new Set(vectors.flatMap((v) => strings(v.expect_custom_data)));
  return [...new Set(vectors.flatMap((v) => strings(v.custom_data)))].filter((s) => !kept.has(s) && s.length >= 4);
}

const RAW = [
  /[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+\.[A-Za-z]{2,}/, // an email address
  /\b(?:\d{1,3}\.){3}\d{1,3}\b/, // an IPv4 address (IPs come only from requests: never logged)
  /2001:db8/i, // an IPv6 address of the tests
  /650[ .-]?555|\(650\)|7700 ?900|30 ?1234567/, // phone numbers the tests send
  /\b(Jane|Doe|Bea|Ada|Lovelace|Menlo Park|Checkout\.Buyer)\b/, // names and cities the tests send
];

test('no raw customer data or secret in any Worker log line of the suite', () => {
  assert.ok(existsSync(LOG_FILE), 'the suite ran and its Worker logs were kept');
  const lines = readFileSync(LOG_FILE, 'utf8').split('\n').filter(Boolean);
  assert.ok(lines.length > 100, `a real suite's worth of log lines (${lines.length})`);
  const secrets = [TOKEN, ADMIN_TOKEN, 'order-secret', 'shop-secret', 'tok-a1', 'admin-a'];
  const scrubbed = scrubbedValues();
  assert.ok(scrubbed.length > 20, 'the scrubber vectors were read');
  for (const line of lines) {
    for (const re of RAW) assert.ok(!re.test(line), `raw customer data in a log line: ${line.slice(0, 300)}`);
    for (const v of scrubbed) assert.ok(!line.includes(v), `a value scrubbed from custom_data in a log line: ${line.slice(0, 300)}`);
    for (const s of secrets) assert.ok(!line.includes(s), `a secret in a log line: ${line.slice(0, 120)}`);
  }
});
