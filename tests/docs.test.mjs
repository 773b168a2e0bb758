// Keeps the documentation true, fast and without servers: `node --test tests/docs.test.mjs`.
//
// 1. README.md stays a front page: at most 10 KiB.
// 2. The settings table of docs/configuration.md (the first table under "## Settings") names
//    exactly the settings the Worker reads. A setting read by the code is a string literal of
//    UPPER_SNAKE_CASE passed to one of the readers in SETTING_READERS (`var("X")`,
//    `num("X", …)`, `env.var("X")`, `env.secret("X")`), or listed in the `PLATFORMS` table of
//    webhook secrets; a TENANTS field is a field of the `TenantIn` struct (and of the structs
//    its fields hold, e.g. `PixelIn`), written `TENANTS[].field` / `TENANTS[].pixels[].field`.
// 3. Every relative link in README.md, ARCHITECTURE.md, BENCHMARKS.md and docs/*.md points to a
//    file that exists and, with a `#fragment` into a Markdown file, to a heading it has.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';

const ROOT = resolve(dirname(new URL(import.meta.url).pathname), '..');
const read = (path) => readFileSync(join(ROOT, path), 'utf8');

/** Functions whose first argument, an UPPER_SNAKE string literal, is a setting's name. */
const SETTING_READERS = ['var', 'num', 'secret'];
/** The Rust struct `TENANTS` entries are parsed into. */
const TENANT_STRUCT = 'TenantIn';

/** Every `.rs` file under `dir` (relative to the root). */
function rustFiles(dir) {
  const out = [];
  for (const name of readdirSync(join(ROOT, dir))) {
    const path = join(dir, name);
    if (statSync(join(ROOT, path)).isDirectory()) out.push(...rustFiles(path));
    else if (name.endsWith('.rs')) out.push(path);
  }
  return out;
}

/** Rust source without comment lines (`//`, `///`, `//!`) and block comments. */
const withoutComments = (src) =>
  src
    .replace(/\/\*[\s\S]*?\*\//g, '')
    .split('\n')
    .filter((line) => !/^\s*\/\//.test(line))
    .join('\n');

const workerSources = () =>
  rustFiles('worker/src').map((path) => ({ path, src: withoutComments(read(path)) }));

/** Setting names the Worker reads (vars, secrets, webhook secrets). */
function settingsInCode(sources) {
  const names = new Set();
  const call = new RegExp(`\\b(?:${SETTING_READERS.join('|')})\\s*\\(\\s*"([A-Z][A-Z0-9_]*)"`, 'g');
  for (const { src } of sources) {
    for (const m of src.matchAll(call)) names.add(m[1]);
    const platforms = src.match(/\bconst\s+PLATFORMS\b[^=]*=\s*\[([\s\S]*?)\];/);
    if (platforms) for (const m of platforms[1].matchAll(/"([A-Z][A-Z0-9_]*)"/g)) names.add(m[1]);
  }
  return names;
}

/** The body (between the braces) of `struct name` in any of the sources, or undefined. */
function structBody(sources, name) {
  for (const { src } of sources) {
    const m = src.match(new RegExp(`\\bstruct\\s+${name}\\s*\\{([^}]*)\\}`));
    if (m) return m[1];
  }
  return undefined;
}

/** JSON field paths of a serde struct, following fields whose type is another struct. */
function structFields(sources, name, prefix, seen = new Set([name])) {
  const body = structBody(sources, name);
  if (body === undefined) return undefined;
  const fields = [];
  let rename;
  for (const line of body.split('\n')) {
    const attr = line.match(/#\[serde\([^\]]*\brename\s*=\s*"([^"]+)"/);
    if (attr) rename = attr[1];
    const field = line.match(/^\s*(?:pub(?:\([^)]*\))?\s+)?([a-z_][a-z0-9_]*)\s*:\s*(.+?),?\s*$/);
    if (!field) continue;
    const key = `${prefix}.${rename ?? field[1]}`;
    rename = undefined;
    fields.push(key);
    for (const [inner] of field[2].matchAll(/\b[A-Z][A-Za-z0-9]*\b/g)) {
      if (seen.has(inner) || structBody(sources, inner) === undefined) continue;
      const list = /^\s*(?:std::vec::)?Vec\s*</.test(field[2]);
      fields.push(...(structFields(sources, inner, list ? `${key}[]` : key, new Set([...seen, inner])) ?? []));
    }
  }
  return fields;
}

/** Setting names in the first table under the `## Settings` heading of docs/configuration.md. */
function settingsInDocs() {
  const doc = read('docs/configuration.md');
  const start = doc.search(/^## Settings\s*$/m);
  assert.ok(start >= 0, 'docs/configuration.md has no "## Settings" section');
  const section = doc.slice(start).split(/\n## /)[0];
  const lines = section.split('\n');
  const from = lines.findIndex((l) => l.startsWith('|'));
  const to = lines.findIndex((l, i) => i > from && !l.startsWith('|'));
  const rows = from < 0 ? [] : lines.slice(from, to < 0 ? undefined : to);
  assert.ok(rows.length > 2, 'the Settings section has no table');
  const names = new Set();
  for (const row of rows.slice(2)) {
    const first = row.split('|')[1] ?? '';
    for (const m of first.matchAll(/`([A-Z][A-Z0-9_]*(?:\[\])?(?:\.[a-z_]+(?:\[\])?)*)`/g)) names.add(m[1]);
  }
  return names;
}

const difference = (a, b) => [...a].filter((x) => !b.has(x)).sort();

test('README.md is a front page: at most 10 KiB', () => {
  const bytes = statSync(join(ROOT, 'README.md')).size;
  assert.ok(bytes <= 10_240, `README.md is ${bytes} bytes; move detail into docs/`);
});

test('the settings table names exactly the settings the code reads', () => {
  const sources = workerSources();
  const code = settingsInCode(sources);
  const tenantFields = structFields(sources, TENANT_STRUCT, 'TENANTS[]');
  assert.ok(tenantFields, `struct ${TENANT_STRUCT} (the TENANTS parser) not found in worker/src`);
  for (const f of tenantFields) code.add(f);
  assert.ok(code.has('PIXEL_ID') && code.has('TENANTS'), 'no settings found in worker/src: the patterns are out of date');
  const docs = settingsInDocs();
  const undocumented = difference(code, docs);
  const unread = difference(docs, code);
  const message = [
    undocumented.length ? `read by worker/src but not in the docs/configuration.md table: ${undocumented.join(', ')}` : '',
    unread.length ? `in the docs/configuration.md table but not read by worker/src: ${unread.join(', ')}` : '',
  ].filter(Boolean).join('\n');
  assert.equal(message, '', message);
});

/** GitHub's anchor for a heading. */
function slug(heading) {
  return heading
    .replace(/\[([^\]]*)\]\([^)]*\)/g, '$1')
    .replace(/[`*]/g, '')
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, '')
    .replace(/\s/g, '-');
}

/** The anchors of a Markdown file's headings (duplicates get `-1`, `-2`, … as on GitHub). */
function anchors(path) {
  const seen = new Map();
  const out = new Set();
  const text = readFileSync(path, 'utf8').replace(/^```[\s\S]*?^```/gm, '');
  for (const m of text.matchAll(/^#{1,6}\s+(.+?)\s*#*\s*$/gm)) {
    const base = slug(m[1]);
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    out.add(n ? `${base}-${n}` : base);
  }
  return out;
}

const docFiles = () => [
  'README.md',
  'ARCHITECTURE.md',
  'BENCHMARKS.md',
  ...readdirSync(join(ROOT, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`),
];

test('every relative link points to a file (and heading) that exists', () => {
  const broken = [];
  for (const file of docFiles()) {
    const abs = join(ROOT, file);
    if (!existsSync(abs)) {
      broken.push(`${file}: missing`);
      continue;
    }
    const text = readFileSync(abs, 'utf8')
      .replace(/^```[\s\S]*?^```/gm, '')
      .replace(/`[^`\n]*`/g, '');
    for (const m of text.matchAll(/\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)) {
      const target = m[1];
      if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue; // https:, mailto:, …
      const [pathPart, fragment] = target.split('#');
      const dest = pathPart ? resolve(dirname(abs), decodeURIComponent(pathPart)) : abs;
      if (!existsSync(dest)) {
        broken.push(`${file}: ${target} (no ${relative(ROOT, dest)})`);
        continue;
      }
      if (fragment && dest.endsWith('.md') && !anchors(dest).has(fragment.toLowerCase())) {
        broken.push(`${file}: ${target} (no heading #${fragment} in ${relative(ROOT, dest)})`);
      }
    }
  }
  assert.deepEqual(broken, [], `broken links:\n${broken.join('\n')}`);
});
