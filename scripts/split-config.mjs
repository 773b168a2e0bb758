// The split deployment's two wrangler configurations, written from wrangler.toml (the one file a
// merchant edits) into build/split/ (ARCHITECTURE.md, "Two Workers"; docs/operating.md):
//
//   worker.jsonc  the whole Worker as wrangler.toml describes it (same name, ledger, queues and
//                 secrets), without its routes: nothing but the beacon Worker reaches it;
//   beacons.jsonc the beacon Worker (build/beacons) on those routes, with the same settings
//                 ([vars], the rate limiter), the EVENTS queue producer and a BACKEND service
//                 binding to the whole Worker. It needs no secret.
//
// Both read the same [vars], so the consent, GPC, LDU and data-control modes applied to a beacon
// are the ones the whole Worker applies to an order. Usage: node scripts/split-config.mjs
// [wrangler.toml] [out dir]. Wrangler's own reader parses the file (the pinned wrangler), so the
// generated files mean what wrangler.toml means.
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, relative, resolve } from 'node:path';
import { experimental_readRawConfig as readRawConfig } from 'wrangler';

const ROOT = resolve(dirname(new URL(import.meta.url).pathname), '..');
const source = resolve(process.argv[2] ?? `${ROOT}/wrangler.toml`);
const out = resolve(process.argv[3] ?? `${ROOT}/build/split`);
const fail = (why) => {
  console.error(`split-config: ${why}`);
  process.exit(2);
};

const { rawConfig: raw } = readRawConfig({ config: source });
if (raw.env && Object.keys(raw.env).length > 0) {
  fail(`${source} has [env.*] sections; write one wrangler.toml per environment and split each`);
}
if (!raw.name) fail(`${source} names no Worker`);
for (const [table, value] of Object.entries(raw)) {
  if (value && typeof value === 'object' && !Array.isArray(value) && ('routes' in value || 'route' in value)) {
    fail(`${source}: routes is inside [${table}]; write it above the first [table], where wrangler reads it`);
  }
}
const events = raw.queues?.producers?.find((p) => p.binding === 'EVENTS');
if (!events) fail(`${source} has no EVENTS queue producer: the beacon Worker would have nowhere to put beacons`);
const routing = {
  ...(raw.routes && { routes: raw.routes }),
  ...(raw.route && { route: raw.route }),
  ...(raw.workers_dev !== undefined && { workers_dev: raw.workers_dev }),
  ...(raw.preview_urls !== undefined && { preview_urls: raw.preview_urls }),
};
// Paths in a wrangler file are relative to it: `main` points back at this checkout's build.
const main = (dir) => relative(out, `${ROOT}/build/${dir}/index.js`);
const whole = { ...raw, main: main('worker'), workers_dev: false, preview_urls: false };
for (const k of ['routes', 'route', 'build']) delete whole[k];
const beacons = {
  name: `${raw.name}-beacons`,
  main: main('beacons'),
  // A service binding reaches Workers of the same account only.
  ...(raw.account_id && { account_id: raw.account_id }),
  compatibility_date: raw.compatibility_date,
  ...(raw.compatibility_flags && { compatibility_flags: raw.compatibility_flags }),
  ...routing,
  vars: raw.vars ?? {},
  ...(raw.ratelimits && { ratelimits: raw.ratelimits }),
  queues: { producers: [events] },
  services: [{ binding: 'BACKEND', service: raw.name }],
  ...(raw.observability && { observability: raw.observability }),
};
mkdirSync(out, { recursive: true });
const header = `written by scripts/split-config.mjs from ${relative(out, source)}: edit that file, not this one`;
const write = (file, config) => writeFileSync(`${out}/${file}`, `// ${header}\n${JSON.stringify(config, null, 2)}\n`);
write('worker.jsonc', whole);
write('beacons.jsonc', beacons);
const at = relative(process.cwd(), out) || '.';
console.log(`${at}/worker.jsonc: ${whole.name}, without routes; ${at}/beacons.jsonc: ${beacons.name}, BACKEND = ${raw.name}`);
