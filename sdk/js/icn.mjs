// ICN gateway SDK: a client for the gateway's REST API under /v1, for Node 20 or later.
//
// No dependencies and no build step: node:crypto for SHA-256 and Ed25519, the global
// fetch for HTTP. Bodies are the gateway's protobuf messages in the proto3 JSON mapping
// (lowerCamelCase names, 64-bit integers as decimal strings, bytes as base64, enums by
// name, default values left out) and are returned as the gateway sends them.
//
// The member's key stays here: the SDK signs the login challenge and the member's
// transfers itself, so the node never sees the key. A transfer is identified by the
// SHA-256 of its protobuf encoding, hence the small encoder below; it must produce
// exactly the bytes prost produces in Rust (crates/icn-ledger-records/src/signed.rs), which the
// tests in test/ check against the Rust code and a real ledger.
//
// Every signature names its purpose (signing format v1, docs/SECURITY.md): it covers the
// purpose's context, a zero byte, then the message (crates/icn-identity/src/purpose.rs).
// A login challenge is signed only when it is one, for this member, from the node meant.

import { createHash, createPrivateKey, createPublicKey, KeyObject, sign as cryptoSign } from 'node:crypto';

/** The context of each purpose a member signs for, as `icn_identity::Purpose` names them. */
export const PURPOSES = Object.freeze({
  transfer: 'icn/ledger/transfer/v1',
  gossipEntry: 'icn/gossip/entry/v1',
  login: 'icn/gateway/login/v1',
});
/** First word of a login challenge (`icn_identity::login`). */
const CHALLENGE_DOMAIN = 'icn-gateway-login/v1';
const CHALLENGE_RANDOM_HEX = 64;

/** How long a request (not an event stream) may take by default. */
const DEFAULT_TIMEOUT_MS = 30_000;
/** How long an event stream waits before reconnecting unless the server says (`retry:`). */
const DEFAULT_RETRY_MS = 1_000;

const INT64_MIN = -(1n << 63n);
const INT64_MAX = (1n << 63n) - 1n;
const UINT64_MAX = (1n << 64n) - 1n;

// ---------------------------------------------------------------------------------
// Errors

/** A non-2xx answer of the gateway, or no answer at all (`status` 0). */
export class IcnError extends Error {
  /**
   * @param {{status: number, code: string, reason?: string, message: string, cause?: unknown}} fields
   */
  constructor({ status, code, reason = '', message, cause }) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'IcnError';
    /** HTTP status; 0 when the gateway could not be reached or did not answer in time. */
    this.status = status;
    /** gRPC code name, such as `PERMISSION_DENIED`. */
    this.code = code;
    /** Finer, stable reason such as `TOKEN_REVOKED` or `SCOPE_MISSING`; often empty. */
    this.reason = reason;
  }
}

/**
 * gRPC code names of HTTP statuses, for errors without the gateway's JSON body: the
 * router's bare 404, axum's plain-text 400 for a malformed query, a proxy's page.
 */
const CODE_OF_STATUS = {
  400: 'INVALID_ARGUMENT',
  401: 'UNAUTHENTICATED',
  403: 'PERMISSION_DENIED',
  404: 'NOT_FOUND',
  409: 'ABORTED',
  413: 'RESOURCE_EXHAUSTED',
  429: 'RESOURCE_EXHAUSTED',
  499: 'CANCELLED',
  501: 'UNIMPLEMENTED',
  503: 'UNAVAILABLE',
  504: 'DEADLINE_EXCEEDED',
};

async function errorFromResponse(response) {
  const text = await response.text().catch(() => '');
  let error;
  try {
    error = JSON.parse(text).error;
  } catch {
    // Not one of the gateway's JSON errors.
  }
  return new IcnError({
    status: response.status,
    code: error?.code ?? CODE_OF_STATUS[response.status] ?? (response.status >= 500 ? 'INTERNAL' : 'UNKNOWN'),
    reason: error?.reason ?? '',
    message: error?.message ?? (text || response.statusText || `HTTP ${response.status}`),
  });
}

function unreachable(url, cause) {
  const timedOut = cause?.name === 'TimeoutError';
  return new IcnError({
    status: 0,
    code: timedOut ? 'DEADLINE_EXCEEDED' : 'UNAVAILABLE',
    message: timedOut ? `no answer from ${url} in time` : `cannot reach ${url}: ${cause?.message ?? cause}`,
    cause,
  });
}

// ---------------------------------------------------------------------------------
// Keys and DIDs

const BASE58_ALPHABET = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz';
/** Multicodec prefix of an Ed25519 public key. */
const ED25519_PUB = [0xed, 0x01];

function base58btc(bytes) {
  let n = 0n;
  for (const b of bytes) n = (n << 8n) | BigInt(b);
  let out = '';
  while (n > 0n) {
    out = BASE58_ALPHABET[Number(n % 58n)] + out;
    n /= 58n;
  }
  // Each leading zero byte is a leading '1'.
  for (const b of bytes) {
    if (b !== 0) break;
    out = '1' + out;
  }
  return out;
}

/** The `did:icn:` DID of a raw 32-byte Ed25519 public key. */
export function didFromPublicKey(raw32) {
  const raw = toBytes(raw32, 'publicKey');
  if (raw.length !== 32) throw new TypeError(`an Ed25519 public key has 32 bytes, got ${raw.length}`);
  return `did:icn:z${base58btc([...ED25519_PUB, ...raw])}`;
}

/**
 * An Ed25519 private key from a KeyObject, PKCS#8 DER bytes or a PKCS#8 PEM string.
 * @returns {KeyObject}
 */
export function privateKey(key) {
  let k;
  if (key instanceof KeyObject) {
    k = key;
  } else if (typeof key === 'string') {
    k = createPrivateKey(key);
  } else if (key instanceof Uint8Array || key instanceof ArrayBuffer) {
    k = fromPkcs8Der(Buffer.from(key));
  } else {
    throw new TypeError('a key is a KeyObject, PKCS#8 DER bytes or a PKCS#8 PEM string');
  }
  if (k.type !== 'private' || k.asymmetricKeyType !== 'ed25519') {
    throw new TypeError(`an Ed25519 private key is needed, got a ${k.asymmetricKeyType} ${k.type} key`);
  }
  return k;
}

/** PKCS#8 v1 of an Ed25519 key up to its 32-byte seed (RFC 8410). */
const ED25519_PKCS8_V1_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');
const ED25519_OID = '2b6570';

function fromPkcs8Der(der) {
  try {
    return createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
  } catch (e) {
    // The OpenSSL 3.0 that Node 20 bundles refuses PKCS#8 v2 (RFC 5958, with the public
    // key), which is what ed25519-dalek writes (NodeIdentity::signing_key_pkcs8_der).
    const v2 = ed25519Pkcs8V2(der);
    if (!v2) throw e;
    const v1 = Buffer.concat([ED25519_PKCS8_V1_PREFIX, v2.seed]);
    const k = createPrivateKey({ key: v1, format: 'der', type: 'pkcs8' });
    const derived = Buffer.from(createPublicKey(k).export({ format: 'jwk' }).x, 'base64url');
    if (v2.publicKey && !derived.equals(v2.publicKey)) {
      throw new TypeError('the PKCS#8 key holds a public key that is not its private key\'s');
    }
    return k;
  }
}

/** One DER element at `at`: its tag and where its contents start and end. */
function derElement(der, at) {
  if (at + 2 > der.length) return undefined;
  const tag = der[at];
  let length = der[at + 1];
  let start = at + 2;
  if (length & 0x80) {
    const size = length & 0x7f;
    if (size === 0 || size > 2 || start + size > der.length) return undefined;
    length = 0;
    for (let i = 0; i < size; i++) length = (length << 8) | der[start + i];
    start += size;
  }
  const end = start + length;
  return end <= der.length ? { tag, start, end } : undefined;
}

/** The seed and public key of an Ed25519 PKCS#8 v2 key, or undefined if it is not one. */
function ed25519Pkcs8V2(der) {
  const outer = derElement(der, 0);
  if (outer?.tag !== 0x30 || outer.end !== der.length) return undefined;
  const parts = [];
  for (let at = outer.start; at < outer.end; ) {
    const e = derElement(der, at);
    if (!e) return undefined;
    parts.push({ ...e, bytes: der.subarray(e.start, e.end) });
    at = e.end;
  }
  const [version, algorithm, secret, ...rest] = parts;
  if (version?.tag !== 0x02 || version.bytes.toString('hex') !== '01') return undefined;
  const oid = algorithm?.tag === 0x30 ? derElement(algorithm.bytes, 0) : undefined;
  const isEd25519 = oid?.tag === 0x06 && algorithm.bytes.subarray(oid.start, oid.end).toString('hex') === ED25519_OID;
  if (!isEd25519) return undefined;
  // The private key is an OCTET STRING holding the 32-byte seed as an OCTET STRING.
  const seed = secret?.tag === 0x04 ? derElement(secret.bytes, 0) : undefined;
  if (seed?.tag !== 0x04 || seed.end - seed.start !== 32) return undefined;
  // [1] IMPLICIT BIT STRING: no unused bits, then the 32-byte key; [0] attributes are ignored.
  const publicKey = rest.find((e) => e.tag === 0x81);
  if (publicKey && (publicKey.bytes.length !== 33 || publicKey.bytes[0] !== 0)) return undefined;
  return { seed: secret.bytes.subarray(seed.start, seed.end), publicKey: publicKey?.bytes.subarray(1) };
}

/** The DID of the member holding `key` (see {@link privateKey} for the forms accepted). */
export function didFromKey(key) {
  const jwk = createPublicKey(privateKey(key)).export({ format: 'jwk' });
  return didFromPublicKey(Buffer.from(jwk.x, 'base64url'));
}

// ---------------------------------------------------------------------------------
// Values in the proto3 JSON mapping, and back

/** Bytes from a Uint8Array, or from base64 (standard or URL-safe) as JSON carries them. */
function toBytes(value, name) {
  if (value === undefined || value === null) return new Uint8Array(0);
  if (value instanceof Uint8Array) return value;
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  if (typeof value === 'string') return new Uint8Array(Buffer.from(value, 'base64'));
  throw new TypeError(`\`${name}\` must be bytes or a base64 string`);
}

function toBigInt(value, name, min, max) {
  if (value === undefined || value === null || value === '') return 0n;
  let n;
  if (typeof value === 'bigint') {
    n = value;
  } else if (typeof value === 'number') {
    if (!Number.isSafeInteger(value)) {
      throw new TypeError(`\`${name}\` must be a safe integer; pass larger ones as a bigint or a decimal string`);
    }
    n = BigInt(value);
  } else if (typeof value === 'string' && /^-?\d+$/.test(value)) {
    n = BigInt(value);
  } else {
    throw new TypeError(`\`${name}\` must be an integer, got ${JSON.stringify(value)}`);
  }
  if (n < min || n > max) throw new RangeError(`\`${name}\` ${n} is out of range`);
  return n;
}

const toInt64 = (v, name) => toBigInt(v, name, INT64_MIN, INT64_MAX);
const toUint64 = (v, name) => toBigInt(v, name, 0n, UINT64_MAX);
const toUint32 = (v, name) => toBigInt(v, name, 0n, 0xffffffffn);
const base64 = (bytes) => Buffer.from(bytes).toString('base64');

// ---------------------------------------------------------------------------------
// Protobuf encoding, as prost does it: fields in field-number order, proto3 default
// values left out, every element of a repeated field written.

const VARINT = 0;
const LENGTH_DELIMITED = 2;

class ProtoWriter {
  #bytes = [];

  #varint(n) {
    let v = BigInt.asUintN(64, n);
    while (v > 0x7fn) {
      this.#bytes.push(Number(v & 0x7fn) | 0x80);
      v >>= 7n;
    }
    this.#bytes.push(Number(v));
  }

  #tag(field, wireType) {
    this.#varint(BigInt((field << 3) | wireType));
  }

  #delimited(field, bytes) {
    this.#tag(field, LENGTH_DELIMITED);
    this.#varint(BigInt(bytes.length));
    for (const b of bytes) this.#bytes.push(b);
  }

  /** int64 and uint64 alike: a negative int64 is its 64-bit two's complement (10 bytes). */
  integer(field, n) {
    if (n === 0n) return;
    this.#tag(field, VARINT);
    this.#varint(n);
  }

  bool(field, b) {
    if (!b) return;
    this.#tag(field, VARINT);
    this.#varint(1n);
  }

  string(field, s) {
    if (!s) return;
    this.#delimited(field, new TextEncoder().encode(s));
  }

  bytes(field, b) {
    if (b.length === 0) return;
    this.#delimited(field, b);
  }

  repeatedBytes(field, list) {
    for (const b of list) this.#delimited(field, b);
  }

  finish() {
    return new Uint8Array(this.#bytes);
  }
}

/**
 * The protobuf encoding of an `icn.ledger.v1.Transfer`, given in its JSON form (as the
 * gateway sends and takes it) or with bigints and Uint8Arrays.
 * @returns {Uint8Array}
 */
export function encodeTransfer(t) {
  const w = new ProtoWriter();
  w.string(1, t.coopId);
  w.string(2, t.currency);
  w.string(3, t.payer);
  w.string(4, t.payee);
  w.integer(5, toInt64(t.amount, 'amount'));
  w.string(6, t.memo);
  w.string(7, t.idempotencyId);
  w.integer(8, toUint64(t.payerSeq, 'payerSeq'));
  w.bytes(9, toBytes(t.prevHash, 'prevHash'));
  w.repeatedBytes(10, (t.deps ?? []).map((d) => toBytes(d, 'deps')));
  w.integer(11, toInt64(t.createdAtMs, 'createdAtMs'));
  w.bytes(12, toBytes(t.signature, 'signature'));
  w.integer(13, toUint32(t.format, 'format'));
  return w.finish();
}

/**
 * A transfer's hash: SHA-256 of its encoding with `signature` empty. It is what the
 * payer signs and the transfer's id (`prevHash`, `deps`, {@link IcnClient#getTransfer}).
 * @returns {Uint8Array} 32 bytes
 */
export function transferHash(t) {
  return sha256(encodeTransfer({ ...t, signature: undefined }));
}

/** The protobuf encoding of an `icn.gossip.v1.Entry` (JSON form or native values). */
export function encodeEntry(e) {
  const w = new ProtoWriter();
  w.bytes(1, toBytes(e.hash, 'hash'));
  w.string(2, e.topic);
  w.string(3, e.author);
  w.integer(4, toUint64(e.seq, 'seq'));
  w.bytes(5, toBytes(e.payload, 'payload'));
  w.bool(6, e.compressed);
  w.integer(7, toInt64(e.timestampMs, 'timestampMs'));
  w.bytes(8, toBytes(e.signature, 'signature'));
  return w.finish();
}

function sha256(bytes) {
  return new Uint8Array(createHash('sha256').update(bytes).digest());
}

/** A 64-bit integer as JSON carries it: a decimal string, left out (undefined) when zero. */
const int64Json = (n) => (n === 0n ? undefined : n.toString());

/** Drops proto3 default values, as the JSON mapping leaves them out. */
function withoutDefaults(o) {
  return Object.fromEntries(
    Object.entries(o).filter(
      ([, v]) => v !== undefined && v !== '' && v !== false && !(Array.isArray(v) && v.length === 0),
    ),
  );
}

/** A transfer in its JSON form, as the gateway takes and sends it, from any accepted form. */
function transferJson(t) {
  return withoutDefaults({
    coopId: t.coopId,
    currency: t.currency,
    payer: t.payer,
    payee: t.payee,
    amount: int64Json(toInt64(t.amount, 'amount')),
    memo: t.memo,
    idempotencyId: t.idempotencyId,
    payerSeq: int64Json(toUint64(t.payerSeq, 'payerSeq')),
    prevHash: base64(toBytes(t.prevHash, 'prevHash')),
    deps: (t.deps ?? []).map((d) => base64(toBytes(d, 'deps'))),
    createdAtMs: int64Json(toInt64(t.createdAtMs, 'createdAtMs')),
    signature: base64(toBytes(t.signature, 'signature')),
    format: toUint32(t.format, 'format') === 0n ? undefined : Number(t.format),
  });
}

/**
 * The payer's next transfer after `account` (its own account as the gateway reports
 * it): it follows the account's tip and names the unclaimed incoming transfers as deps,
 * as the Rust client does (`icn_ledger::client::next_transfer`). Unsigned, without a
 * payer: {@link signTransfer} sets both.
 */
export function nextTransfer(account, { coopId, currency, payee, amount, memo = '', idempotencyId = '' }, createdAtMs) {
  const seq = toUint64(account.seq, 'seq');
  const tipSeq = toUint64(account.tipSeq, 'tipSeq');
  const [lastSeq, lastHash] = tipSeq > seq ? [tipSeq, account.tipHash] : [seq, account.headHash];
  const payerSeq = lastSeq + 1n;
  return transferJson({
    coopId,
    currency,
    payee,
    amount,
    memo,
    idempotencyId: idempotencyId || `seq-${payerSeq}`,
    payerSeq,
    prevHash: lastHash,
    deps: account.unclaimedIncoming,
    createdAtMs,
  });
}

/** Signs a transfer as the member holding `key`, who becomes its payer; returns its JSON form. */
export function signTransfer(t, key) {
  const k = privateKey(key);
  const unsigned = transferJson({ ...t, payer: didFromKey(k), signature: undefined });
  return { ...unsigned, signature: base64(signFor(PURPOSES.transfer, transferHash(unsigned), k)) };
}

/**
 * A gossip entry signed as the member holding `key`, its author: the hash is SHA-256 of
 * the encoding with `hash` and `signature` empty, and the signature is over the hash.
 * `payload` is bytes (a string is read as base64); `seq` is the author's next one in
 * the topic, from 1.
 */
export function signEntry({ topic, seq, payload, compressed = false, timestampMs = Date.now() }, key) {
  const k = privateKey(key);
  const entry = withoutDefaults({
    topic,
    author: didFromKey(k),
    seq: int64Json(toUint64(seq, 'seq')),
    payload: base64(toBytes(payload, 'payload')),
    compressed,
    timestampMs: int64Json(toInt64(timestampMs, 'timestampMs')),
  });
  const hash = sha256(encodeEntry(entry));
  return { hash: base64(hash), ...entry, signature: base64(signFor(PURPOSES.gossipEntry, hash, k)) };
}

/** The bytes a signature for `purpose` (a context from {@link PURPOSES}) over `message` covers. */
export function signedBytes(purpose, message) {
  return Buffer.concat([Buffer.from(purpose, 'utf8'), Buffer.from([0]), Buffer.from(toBytes(message, 'message'))]);
}

/** An Ed25519 signature for `purpose` over `message` with the KeyObject `k`. */
function signFor(purpose, message, k) {
  return cryptoSign(null, signedBytes(purpose, message), k);
}

/**
 * Checks a login challenge before `did` signs it: `icn-gateway-login/v1 <node> <member>
 * <64 hex digits>`, naming this member and, when `node` is given, that node. Throws a
 * TypeError saying what is wrong; returns the node's DID.
 */
export function checkChallenge(challenge, did, node) {
  const words = Buffer.from(toBytes(challenge, 'challenge')).toString('utf8').split(' ');
  const [domain, named, member, random] = words;
  const form =
    words.length === 4 &&
    domain === CHALLENGE_DOMAIN &&
    named.startsWith('did:icn:z') &&
    random.length === CHALLENGE_RANDOM_HEX &&
    /^[0-9a-fA-F]+$/.test(random);
  if (!form) throw new TypeError(`not a login challenge (expected \`${CHALLENGE_DOMAIN} <node> <member> <random>\`)`);
  if (member !== did) throw new TypeError(`the challenge names the member ${member}, not ${did}`);
  if (node !== undefined && named !== node) {
    throw new TypeError(`the challenge is from node ${named}, not the expected node ${node}`);
  }
  return named;
}

/** Lower-case hex of bytes, or of base64 as JSON carries them: how transfers are named in URLs. */
export function toHex(bytes) {
  return Buffer.from(toBytes(bytes, 'bytes')).toString('hex');
}

// ---------------------------------------------------------------------------------
// Server-sent events

/** Splits a `text/event-stream` into events, as the HTML living standard reads it. */
class SseParser {
  #buffer = '';
  #data = [];
  #type = '';
  /** The last `id:` seen; it stays in force for later events. */
  lastId = undefined;
  /** Reconnection delay the server asked for with `retry:`. */
  retryMs = undefined;

  /** Feeds text; returns the events it completed. */
  push(text) {
    this.#buffer += text;
    const events = [];
    for (;;) {
      const end = this.#buffer.search(/\r\n|\r|\n/);
      // A '\r' at the very end may be the first half of "\r\n": wait for more.
      if (end < 0 || (end === this.#buffer.length - 1 && this.#buffer[end] === '\r')) break;
      const line = this.#buffer.slice(0, end);
      this.#buffer = this.#buffer.slice(end + (this.#buffer.startsWith('\r\n', end) ? 2 : 1));
      const event = this.#line(line);
      if (event) events.push(event);
    }
    return events;
  }

  #line(line) {
    if (line === '') {
      if (this.#data.length === 0) {
        this.#type = '';
        return undefined;
      }
      const data = this.#data.join('\n');
      const event = { id: this.lastId, event: this.#type || 'message', data: JSON.parse(data) };
      this.#data = [];
      this.#type = '';
      return event;
    }
    if (line.startsWith(':')) return undefined; // A comment: the gateway's keep-alive.
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'data') this.#data.push(value);
    else if (field === 'event') this.#type = value;
    else if (field === 'id' && !value.includes('\0')) this.lastId = value;
    else if (field === 'retry' && /^\d+$/.test(value)) this.retryMs = Number(value);
    return undefined;
  }
}

/** Resolves after `ms`, or with false at once when `signal` aborts. */
function pause(ms, signal) {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve(false);
    const done = (ok) => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      resolve(ok);
    };
    const onAbort = () => done(false);
    const timer = setTimeout(() => done(true), ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

// ---------------------------------------------------------------------------------
// The client

const segment = encodeURIComponent;

export class IcnClient {
  #baseUrl;
  #token;
  #tokenId;
  #key;
  #did;
  #timeoutMs;

  /**
   * @param {{baseUrl: string, token?: string, key?: KeyObject | Uint8Array | string, timeoutMs?: number}} options
   *   `baseUrl` is the gateway's `api.http_listen` as a URL (`http://127.0.0.1:8080`);
   *   `token` one from an earlier login; `key` the member's key, for transfers with that
   *   token; `timeoutMs` how long one request may take (default 30 s; event streams are
   *   not bounded).
   */
  constructor({ baseUrl, token, key, timeoutMs = DEFAULT_TIMEOUT_MS }) {
    if (!baseUrl) throw new TypeError('`baseUrl` is required, such as http://127.0.0.1:8080');
    this.#baseUrl = String(baseUrl).replace(/\/+$/, '');
    this.#token = token;
    this.#timeoutMs = timeoutMs;
    if (key !== undefined) {
      this.#key = privateKey(key);
      this.#did = didFromKey(this.#key);
    }
  }

  /** The `did:icn:` DID of a raw 32-byte Ed25519 public key. */
  static didFromPublicKey(raw32) {
    return didFromPublicKey(raw32);
  }

  /** The bearer token in use, if any. */
  get token() {
    return this.#token;
  }

  /** The DID of the key given to the constructor or to {@link login}. */
  get did() {
    return this.#did;
  }

  // --- auth

  /**
   * Logs in as the member holding `key`: asks for a challenge, checks it
   * ({@link checkChallenge}), signs it for the login purpose, and keeps the token (and the
   * key, for transfers) for the calls that follow.
   * @param {string[]} [scopes] what to ask for; every scope the member may have when empty
   * @param {{node?: string}} [options] `node`: the DID of the node meant; a challenge
   *   from any other is refused unsigned (recommended)
   */
  async login(key, scopes = [], { node } = {}) {
    const k = privateKey(key);
    const did = didFromKey(k);
    const { nonce } = await this.#call('POST', '/v1/auth/challenge', { body: { did }, auth: false });
    checkChallenge(Buffer.from(nonce, 'base64'), did, node);
    const signature = base64(signFor(PURPOSES.login, Buffer.from(nonce, 'base64'), k));
    const login = await this.#call('POST', '/v1/auth/login', {
      body: { did, nonce, signature, scopes },
      auth: false,
    });
    this.#token = login.token;
    this.#tokenId = login.tokenId;
    this.#key = k;
    this.#did = did;
    return login;
  }

  /**
   * Revokes a token: this client's own when `tokenId` is empty (it then has none), any
   * other for an admin.
   */
  async revoke(tokenId = '') {
    const r = await this.#call('POST', '/v1/auth/revoke', { body: withoutDefaults({ tokenId }) });
    if (!tokenId || tokenId === this.#tokenId) {
      this.#token = undefined;
      this.#tokenId = undefined;
    }
    return r;
  }

  // --- node

  /** Whether every service of the node is serving; needs no token. */
  health() {
    return this.#call('GET', '/v1/health', { auth: false, okStatuses: [503] });
  }

  nodeStatus() {
    return this.#call('GET', '/v1/node');
  }

  peers() {
    return this.#call('GET', '/v1/peers');
  }

  /** The gateway's OpenAPI document; needs no token. */
  openapi() {
    return this.#call('GET', '/v1/openapi.json', { auth: false });
  }

  // --- topics

  /** Topics the caller may read. */
  topics({ limit, cursor } = {}) {
    return this.#call('GET', '/v1/topics', { query: { limit, cursor } });
  }

  /** Entries of a topic the caller may read, in this node's arrival order. */
  entries(topic, { author, limit, cursor } = {}) {
    return this.#call('GET', '/v1/entries', { query: { topic, author, limit, cursor } });
  }

  /** Publishes an entry the caller signed (see {@link signEntry}). */
  publishSigned(entry) {
    return this.#call('POST', '/v1/entries', { body: { signed: entry } });
  }

  // --- ledger

  getCoop(coopId) {
    return this.#call('GET', `/v1/coops/${segment(coopId)}`);
  }

  /** Public figures of a cooperative; needs no token. */
  getCoopStats(coopId) {
    return this.#call('GET', `/v1/coops/${segment(coopId)}/stats`, { auth: false });
  }

  accounts(coopId, { currency, member, limit, cursor } = {}) {
    return this.#call('GET', `/v1/coops/${segment(coopId)}/accounts`, { query: { currency, member, limit, cursor } });
  }

  /** One account: the caller's (`me`) or a member's by DID. */
  balance(coopId, currency, member = 'me') {
    return this.#call('GET', `/v1/coops/${segment(coopId)}/accounts/${segment(currency)}/${segment(member)}`);
  }

  /** The caller's transfers (an admin's: anyone's), newest first; `all` adds unapplied ones. */
  history(coopId, currency, { member, limit, cursor, all } = {}) {
    return this.#call('GET', `/v1/coops/${segment(coopId)}/history`, {
      query: { currency, member, limit, cursor, all },
    });
  }

  /**
   * Pays `payeeDid` from the logged-in member's account: reads the account, builds the
   * next transfer ({@link nextTransfer}), signs it with the member's key and submits it.
   * A retry with the same `idempotencyId` never pays twice.
   * @param {number | bigint | string} amountMinorUnits
   */
  async transfer(coopId, currency, payeeDid, amountMinorUnits, { memo = '', idempotencyId = '' } = {}) {
    if (!this.#key) throw new TypeError('transfer needs the member key: log in with it, or pass `key`');
    const { account = {} } = await this.balance(coopId, currency);
    const payment = { coopId, currency, payee: payeeDid, amount: amountMinorUnits, memo, idempotencyId };
    return this.submitTransfer(signTransfer(nextTransfer(account, payment, Date.now()), this.#key));
  }

  /** Submits a transfer the caller signed as payer ({@link signTransfer}). */
  submitTransfer(transfer) {
    return this.#call('POST', '/v1/transfers', { body: { transfer } });
  }

  /** A transfer the caller paid or received, by its hash (hex, or bytes). */
  getTransfer(hash) {
    const hex = typeof hash === 'string' ? hash : toHex(hash);
    return this.#call('GET', `/v1/transfers/${segment(hex)}`);
  }

  // --- events

  /**
   * Live events the caller may see, as an async iterator of `{id, event, data}`: `id`
   * the event's position, `event` its kind (`transfer`, `gossip_entry`, `task`, `peer`,
   * or `gap` when events were missed), `data` the `icn.gateway.v1.Event`. With
   * `lastEventId` the stream starts after that event (retained ones are replayed). When
   * the stream ends or breaks after it was open, it reconnects from the last event seen
   * unless `reconnect` is false. It ends when `signal` aborts or the loop breaks.
   * @param {{kinds?: string[], topics?: string[], lastEventId?: string | number,
   *   signal?: AbortSignal, reconnect?: boolean, retryMs?: number}} [options]
   */
  async *events({ kinds, topics, lastEventId, signal, reconnect = true, retryMs = DEFAULT_RETRY_MS } = {}) {
    const parser = new SseParser();
    parser.lastId = lastEventId === undefined || lastEventId === null ? undefined : String(lastEventId);
    let opened = false;
    for (;;) {
      if (signal?.aborted) return;
      const url = this.#url('/v1/events', { kinds: kinds?.join(','), topics: topics?.join(',') });
      const headers = { accept: 'text/event-stream', ...this.#authHeader() };
      if (parser.lastId !== undefined) headers['last-event-id'] = parser.lastId;
      // One controller per connection, so leaving the loop closes the connection.
      const connection = new AbortController();
      const abort = () => connection.abort(signal.reason);
      signal?.addEventListener('abort', abort, { once: true });
      try {
        let response;
        try {
          response = await fetch(url, { headers, signal: connection.signal });
        } catch (e) {
          if (signal?.aborted) return;
          if (!opened || !reconnect) throw unreachable(url, e);
        }
        if (response && !response.ok) throw await errorFromResponse(response);
        if (response) {
          opened = true;
          const decoder = new TextDecoder();
          try {
            for await (const chunk of response.body) {
              for (const event of parser.push(decoder.decode(chunk, { stream: true }))) yield event;
            }
          } catch (e) {
            if (signal?.aborted) return;
            if (!reconnect) throw unreachable(url, e);
          }
        }
      } finally {
        signal?.removeEventListener('abort', abort);
        connection.abort();
      }
      if (!reconnect || !(await pause(parser.retryMs ?? retryMs, signal))) return;
    }
  }

  // --- HTTP

  #authHeader() {
    return this.#token ? { authorization: `Bearer ${this.#token}` } : {};
  }

  #url(path, query = {}) {
    const url = new URL(this.#baseUrl + path);
    for (const [name, value] of Object.entries(query)) {
      if (value !== undefined && value !== null && value !== '') url.searchParams.set(name, String(value));
    }
    return url;
  }

  /** One request; the JSON body of a 2xx answer (or of one in `okStatuses`), else an IcnError. */
  async #call(method, path, { query, body, auth = true, okStatuses = [] } = {}) {
    const url = this.#url(path, query);
    const headers = { accept: 'application/json', ...(auth ? this.#authHeader() : {}) };
    if (body !== undefined) headers['content-type'] = 'application/json';
    try {
      const response = await fetch(url, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(this.#timeoutMs),
      });
      if (!response.ok && !okStatuses.includes(response.status)) throw await errorFromResponse(response);
      const text = await response.text();
      return text ? JSON.parse(text) : {};
    } catch (e) {
      throw e instanceof IcnError ? e : unreachable(url, e);
    }
  }
}
