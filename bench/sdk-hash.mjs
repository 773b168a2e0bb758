// The baseline for `capi-edge hash`: Meta's Node business SDK (`ServerSideUtils.normalizeAndHash`)
// on the same JSON lines, doing the same job: parse each line, normalize + hash its value, write
// one JSON line per input (`{"field","sha256"}` or `{"field","error"}`).
//
//   node bench/sdk-hash.mjs ROWS.jsonl OUT.jsonl
//
// Prints one JSON object: rows, the whole job's seconds (read + parse + hash + write, as the CLI
// is timed), and the seconds of the hashing calls alone on pre-parsed rows (the SDK's best case).
import { createRequire } from 'node:module';
import { readFileSync, writeFileSync } from 'node:fs';

const require = createRequire(import.meta.url);
const { ServerSideUtils } = require('facebook-nodejs-business-sdk');
const [input, output] = process.argv.slice(2);

const hashOne = (field, value) => {
  try {
    const h = ServerSideUtils.normalizeAndHash(value, field);
    return h == null ? { field, error: 'empty' } : { field, sha256: h };
  } catch (e) {
    return { field, error: String(e.message ?? e) };
  }
};

// Warm-up so both timings see optimized code, as the native binary does.
for (let i = 0; i < 20_000; i++) hashOne('em', ` User${i}@Example.COM `);

const t0 = process.hrtime.bigint();
const lines = readFileSync(input, 'utf8').split('\n');
const out = [];
const parsed = [];
for (const line of lines) {
  if (!line.trim()) continue;
  let row;
  try {
    row = JSON.parse(line);
  } catch {
    out.push('{"error":"line is not a JSON object","field":null}');
    continue;
  }
  parsed.push(row);
  out.push(JSON.stringify(hashOne(row.field, row.value)));
}
writeFileSync(output, out.join('\n') + '\n');
const t1 = process.hrtime.bigint();

// The hashing calls alone, on rows already in memory.
let sink = 0;
const t2 = process.hrtime.bigint();
for (const row of parsed) sink += hashOne(row.field, row.value).field.length;
const t3 = process.hrtime.bigint();

console.log(JSON.stringify({ rows: out.length, job_s: Number(t1 - t0) / 1e9, calls_only_s: Number(t3 - t2) / 1e9, sink }));
