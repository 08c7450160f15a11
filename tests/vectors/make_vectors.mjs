// Interop test vectors for peerix_nb, computed by a real JavaScript engine the way browser
// Peerix does it: JSON.stringify -> UTF-8, CompressionStream("deflate"), AES-GCM (WebCrypto,
// key = SHA-256 of the UTF-8 secret, IV prepended), SHA-256 namespace parts in base62.
//
// Regenerate (Node >= 18; writes vectors.json next to this file, or stdout with --stdout):
//   node tests/vectors/make_vectors.mjs
// The IVs are fixed so the AES-GCM output is reproducible; Peerix draws them at random.

import { writeFileSync } from 'node:fs';

const BASE62 = '0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ';
const utf8 = new TextEncoder();

const hex = (bytes) => Buffer.from(bytes).toString('hex');

async function deflate(bytes) {
  const stream = new Blob([bytes]).stream().pipeThrough(new CompressionStream('deflate'));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

async function inflate(bytes) {
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream('deflate'));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

async function sha256(bytes) {
  return new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
}

async function aesKey(secret) {
  const raw = await sha256(utf8.encode(secret));
  const key = await crypto.subtle.importKey('raw', raw, { name: 'AES-GCM' }, false, [
    'encrypt',
    'decrypt',
  ]);
  return { raw, key };
}

async function encrypt(key, iv, bytes) {
  const sealed = new Uint8Array(await crypto.subtle.encrypt({ name: 'AES-GCM', iv }, key, bytes));
  const out = new Uint8Array(iv.length + sealed.length);
  out.set(iv, 0);
  out.set(sealed, iv.length);
  return out;
}

// Big-endian base62 of the bytes as one BigInt; "0" for zero, no padding.
function base62(bytes) {
  let n = 0n;
  for (const b of bytes) n = (n << 8n) | BigInt(b);
  if (n === 0n) return '0';
  let out = '';
  while (n > 0n) {
    out = BASE62[Number(n % 62n)] + out;
    n /= 62n;
  }
  return out;
}

const SDP = [
  'v=0',
  'o=- 3912345678 3912345678 IN IP4 0.0.0.0',
  's=-',
  't=0 0',
  'a=group:BUNDLE 0',
  'a=msid-semantic:WMS *',
  'm=application 9 UDP/DTLS/SCTP webrtc-datachannel',
  'c=IN IP4 0.0.0.0',
  'a=mid:0',
  'a=sctp-port:5000',
  'a=max-message-size:65536',
  'a=ice-ufrag:Zq3e',
  'a=ice-pwd:Xk9vV0H7rPq2m1sLwT4yUa',
  'a=fingerprint:sha-256 6B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35',
  'a=setup:actpass',
  '',
].join('\r\n');

const MESSAGES = {
  join: [1, 'a1b2c3', {
    name: 'Ada Lovelace \u2713',
    city: 'Z\u00fcrich',
    lang: '\u65e5\u672c\u8a9e',
    emoji: '\ud83e\udd8a',
    quote: 'she said "hi"\n\ttab \\ slash / </script>',
    n: 42,
    pi: 3.14159,
    ok: true,
    none: null,
    list: [1, 2.5, 'x', []],
  }],
  join_no_metadata: [1, 'peer-0'],
  offer: [2, 'a1b2c3', { type: 'offer', sdp: SDP }, { name: 'Ada' }],
  answer: [3, 'z9y8x7', { type: 'answer', sdp: SDP.replace('actpass', 'active') }],
  candidate: [4, 'a1b2c3', {
    candidate: 'candidate:1 1 udp 2122260223 192.168.1.2 54321 typ host generation 0 ufrag Zq3e',
    sdpMid: '0',
    sdpMLineIndex: 0,
    usernameFragment: 'Zq3e',
  }],
  end_of_candidates: [4, 'a1b2c3', null],
  leave: [5, 'a1b2c3'],
};

// JSON.stringify corner cases, compared byte for byte with Python's to_json.
const JSON_EDGES = {
  control_chars: ['\u0000\u0001\u0008\u0009\u000a\u000b\u000c\u000d\u001f\u007f'],
  line_separators: ['\u2028\u2029\u0085'],
  astral_and_bmp: ['\ud83d\ude00 \u00e9 \u4e2d \ufeff'],
  nested: { a: { b: [{ c: null }, true, false] }, '': 'empty key', 'k\u00e9y': 1 },
  integers: [0, -1, 9007199254740991, 10000000000000000, 1e21],
  fractions: [0.1, -2.5, 3.141592653589793, 1.5e300],
  small_exponents: [5e-7, 1e-7, 1.25e-10],
  // JS numbers have no int/float split: the Python test feeds floats 1.0, -0.0, 2.5 here.
  integral_floats: [1.0, -0, 2.5],
  lone_surrogate: ['\ud800x'],
};

const HASH_INPUTS = [
  'lobby', '', 'peerix', 'Z\u00fcrich', '\u65e5\u672c\u8a9e room', '\ud83e\udd8a', 'a.b c*>',
  'x'.repeat(1000),
];

const BASE62_BYTES = ['00', '0000', '01', '3d', '3e', 'ff', '000001', '00ff00', 'ffffffffffffffff'];

async function main() {
  const secret = 'correct horse battery staple \u2713';
  const { raw, key } = await aesKey(secret);
  const messages = [];
  let i = 0;
  for (const [name, value] of Object.entries(MESSAGES)) {
    const iv = Uint8Array.from({ length: 12 }, (_, k) => (16 * i + k) & 0xff);
    const iv2 = Uint8Array.from({ length: 12 }, (_, k) => (16 * i + 128 + k) & 0xff);
    i += 1;
    const json = utf8.encode(JSON.stringify(value));
    const deflated = await deflate(json);
    if (hex(await inflate(deflated)) !== hex(json)) throw new Error(`deflate round trip ${name}`);
    messages.push({
      name,
      value,
      json: hex(json),
      deflate: hex(deflated),
      iv: hex(iv),
      aesgcm: hex(await encrypt(key, iv, json)), // encryption without compression
      iv_pipeline: hex(iv2),
      pipeline: hex(await encrypt(key, iv2, deflated)), // JSON -> deflate -> AES-GCM
    });
  }
  const jsonEdges = Object.entries(JSON_EDGES).map(([name, value]) => ({
    name,
    value,
    json: hex(utf8.encode(JSON.stringify(value))),
  }));
  const hashes = [];
  for (const input of HASH_INPUTS) {
    const digest = await sha256(utf8.encode(input));
    hashes.push({ input, sha256: hex(digest), hash: base62(digest) });
  }
  const base62Vectors = BASE62_BYTES.map((h) => ({ bytes: h, base62: base62(Buffer.from(h, 'hex')) }));
  const out = {
    about: 'Generated by tests/vectors/make_vectors.mjs; do not edit by hand.',
    generator: `node ${process.version}`,
    secret,
    key: hex(raw),
    messages,
    json_edges: jsonEdges,
    hashes,
    base62: base62Vectors,
  };
  const text = JSON.stringify(out, null, 1) + '\n';
  if (process.argv.includes('--stdout')) {
    process.stdout.write(text);
  } else {
    const path = new URL('./vectors.json', import.meta.url);
    writeFileSync(path, text);
    console.error(`wrote ${path.pathname}`);
  }
}

await main();
