// Deterministic messy customer rows for `capi-edge hash` (JSON lines on stdout).
//
//   node bench/hash-rows.mjs [ROWS] [--torture]
//
// Default: the fields Meta's SDK hashes too (em, ph, fn, ln, ct, st, zp, country), one object of
// strings per line, written the way exports look: stray case and spaces, punctuation, accents,
// ZIP+4, phone formats, country names, some invalid values, some JSON escapes, some pre-hashed.
// --torture adds what a parser must survive: every other field, unknown fields, missing or
// non-string values, duplicate keys, nesting, CRLF, blank lines, invalid JSON, control characters.
// Used by `make bench` (both hashers read the same file) and to prove the CLI's output unchanged.

const rows = Number(process.argv[2] ?? 100_000);
const torture = process.argv.includes('--torture');

// Mulberry32: small, seeded, the same rows on every machine.
let seed = 0x5eed;
const rand = () => {
  seed = (seed + 0x6d2b79f5) | 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
};
const pick = (xs) => xs[Math.floor(rand() * xs.length)];
const int = (n) => Math.floor(rand() * n);
const pad = (n, w) => String(n).padStart(w, '0');
const messCase = (s) => [...s].map((c) => (rand() < 0.3 ? c.toUpperCase() : c)).join('');
const spaces = (s) => pick(['', ' ', '  ', '\t']) + s + pick(['', ' ', ' \t']);

const first = ['Mary-Ann', 'José', 'Zoë', "O'Brien", 'Jean Luc', 'Łukasz', '정', 'Amélie', 'John', 'Ann-Sofie', 'Björn', 'François', 'Siobhán', 'Dmitriy'];
const last = ['Smith', 'Müller', 'García-López', "D'Angelo", 'van der Berg', 'Nguyễn', 'Øster', 'Kowalski', 'Brown.', 'St. John'];
const cities = ['New York', 'São Paulo', 'Zürich', 'St. Louis', 'Winston-Salem', "Coeur d'Alene", 'München', 'Paris 75011', 'Washington, D.C.', 'Tokyo'];
const states = ['CA', 'California', 'US-NY', 'new york', 'Tex.', 'ON', 'Québec', 'Bavaria', 'District of Columbia', 'xx'];
const countries = ['US', 'us', 'USA', 'United States', 'U.S.A.', 'de', 'Germany', 'GBR', 'U.K.', 'France', 'CA', 'Canada', 'br', 'Brasil', 'jp', 'Narnia'];
const domains = ['Example.COM', 'gmail.com', 'shop.example.co.uk', 'EXAMPLE.org', 'mail.example'];
const HEX = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

function value(field, i) {
  switch (field) {
    case 'em':
      return pick([
        () => spaces(`${messCase(pick(first).toLowerCase().replace(/[^a-z]/g, '') || 'user')}.${i}@${pick(domains)}`),
        () => `User${i}+tag@${pick(domains)}`,
        () => `not-an-email-${i}`,
        () => `a@b`,
        () => HEX.toUpperCase(),
      ])();
    case 'ph':
      return pick([
        () => `+1 (${200 + int(800)}) 555-${pad(int(10000), 4)}`,
        () => `${200 + int(800)}.555.${pad(int(10000), 4)}`,
        () => `0049 30 ${pad(int(1e7), 7)}`,
        () => `030 ${pad(int(1e7), 7)}`,
        () => `+44 20 7946 ${pad(int(1e4), 4)}`,
        () => `12`,
      ])();
    case 'fn':
      return spaces(messCase(pick(first)));
    case 'ln':
      return spaces(messCase(pick(last)));
    case 'ct':
      return spaces(messCase(pick(cities)));
    case 'st':
      return spaces(pick(states));
    case 'zp':
      return pick([() => `${pad(int(1e5), 5)}-${pad(int(1e4), 4)}`, () => ` ${pad(int(1e5), 5)} `, () => 'SW1A 1AA', () => '10115', () => 'K1A 0B1', () => '1'])();
    case 'country':
      return spaces(pick(countries));
    case 'ge':
      return pick(['F', 'male', ' Mrs. ', 'x', 'Femme']);
    case 'db':
      return pick(['1997-02-16', '2/16/1997', '16.02.1997', '31/12/1980', '19970216', '2001-02-29', 'soon']);
    case 'external_id':
      return pick([`CUST-${i}`, ` Order_${i} `]);
    default:
      return `v${i}`;
  }
}

const SDK_FIELDS = ['em', 'ph', 'fn', 'ln', 'ct', 'st', 'zp', 'country'];
const ALL_FIELDS = [...SDK_FIELDS, 'ge', 'db', 'external_id', 'EM', 'email', ''];

const out = [];
const flush = () => { process.stdout.write(out.join('')); out.length = 0; };
for (let i = 0; i < rows; i++) {
  const field = pick(torture ? ALL_FIELDS : SDK_FIELDS);
  const v = value(field, i);
  let line;
  const r = rand();
  if (!torture || r < 0.6) {
    // JSON.stringify writes \uXXXX escapes only for control characters; some rows get an
    // escaped non-ASCII letter the way other exporters write them.
    let quoted = JSON.stringify(v);
    if (rand() < 0.02) quoted = quoted.replace(/[^\x00-\x7f]/, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
    const country = rand() < 0.6 ? `,"country":${JSON.stringify(spaces(pick(countries)))}` : '';
    line = `{"field":${JSON.stringify(field)},"value":${quoted}${country}}`;
  } else {
    line = pick([
      () => `{"value":${JSON.stringify(v)},"field":${JSON.stringify(field)}}`,
      () => ` { "field" : ${JSON.stringify(field)} , "value" : ${JSON.stringify(v)} } `,
      () => `{"field":${JSON.stringify(field)},"value":${JSON.stringify(v)}}\r`,
      () => `{"field":${JSON.stringify(field)},"value":${int(1e6)}}`,
      () => `{"field":${JSON.stringify(field)},"value":null,"country":"US"}`,
      () => `{"field":${JSON.stringify(field)}}`,
      () => `{"value":${JSON.stringify(v)}}`,
      () => `{"field":"fn","value":"first","field":${JSON.stringify(field)},"value":${JSON.stringify(v)}}`,
      () => `{"field":${JSON.stringify(field)},"value":${JSON.stringify(v)},"country":{"code":"US"}}`,
      () => `{"field":${JSON.stringify(field)},"value":${JSON.stringify(v)},"country":7}`,
      () => `{"field":${JSON.stringify(field)},"value":${JSON.stringify(v + '\u0001"\\')}}`,
      () => `{"field":${JSON.stringify(field)},"value":"${v.replace(/["\\]/g, '')}\t"}`,
      () => `{"field":${JSON.stringify(field)},"value":${JSON.stringify(v)},}`,
      () => `{"field":${JSON.stringify(field)},"value":${JSON.stringify(v)}} trailing`,
      () => `[${JSON.stringify(field)},${JSON.stringify(v)}]`,
      () => `"just a string"`,
      () => `field=${field} value=${v}`,
      () => '',
      () => '   ',
      () => `{"field":7,"value":${JSON.stringify(v)}}`,
      () => `{"field":${JSON.stringify(field)},"value":${JSON.stringify(HEX + '.AQQCAQIB')}}`,
      () => `{"field":${JSON.stringify(field)},"value":${JSON.stringify(HEX.slice(0, 63) + 'G')}}`,
      () => `{"field":"\\u0065m","value":${JSON.stringify(v)}}`,
      () => `{"field":${JSON.stringify(field)},"value":${JSON.stringify(v)},"country":"\\u00e9"}`,
    ])();
  }
  out.push(line, '\n');
  if (out.length >= 8192) flush();
}
flush();
