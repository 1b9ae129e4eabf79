// The SDK against a real gateway. services/gateway/tests/sdk.rs starts the node, creates
// the cooperative and runs these tests with what they need in the environment:
//
//   ICN_GATEWAY_URL                      the gateway's REST address
//   ICN_SDK_COOP, ICN_SDK_CURRENCY       a cooperative with a currency, nothing paid yet
//   ICN_SDK_TOPIC                        a public topic nobody has published to
//   ICN_SDK_{ALICE,BOB}_{KEY,DID}        two members: PKCS#8 DER keys (base64) and DIDs
//   ICN_SDK_VECTORS                      transfers built and hashed by the Rust ledger code
//
// Without them every test is skipped. The tests run in order and build on each other's
// transfers, like one member's session.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createPublicKey } from 'node:crypto';
import {
  IcnClient,
  IcnError,
  PURPOSES,
  checkChallenge,
  didFromKey,
  encodeTransfer,
  privateKey,
  nextTransfer,
  signEntry,
  signTransfer,
  signedBytes,
  toHex,
  transferHash,
} from '../icn.mjs';

const env = process.env;
const skip = env.ICN_GATEWAY_URL ? false : 'run by services/gateway/tests/sdk.rs, which sets ICN_GATEWAY_URL';
const baseUrl = env.ICN_GATEWAY_URL;
const coop = env.ICN_SDK_COOP;
const currency = env.ICN_SDK_CURRENCY;
const keyOf = (name) => Buffer.from(env[`ICN_SDK_${name}_KEY`] ?? '', 'base64');
const alice = { key: keyOf('ALICE'), did: env.ICN_SDK_ALICE_DID };
const bob = { key: keyOf('BOB'), did: env.ICN_SDK_BOB_DID };

/** How long to wait for an event the node has to deliver. */
const EVENT_TIMEOUT_MS = 15_000;

const balanceOf = (response) => BigInt(response.account?.balance ?? 0);
const hex = (bytes) => Buffer.from(bytes).toString('hex');

/** Asserts that `promise` rejects with an IcnError of this status, code and reason. */
async function refused(promise, status, code, reason) {
  await assert.rejects(promise, (e) => {
    assert.ok(e instanceof IcnError, `an IcnError, got ${e}`);
    assert.deepEqual([e.status, e.code, e.reason], [status, code, reason], e.message);
    assert.ok(e.message.length > 0);
    return true;
  });
}

/** The first event of `events` that `wanted` accepts, within the timeout. */
async function firstEvent(client, options, wanted) {
  const signal = AbortSignal.timeout(EVENT_TIMEOUT_MS);
  const seen = [];
  for await (const e of client.events({ ...options, signal })) {
    if (wanted(e)) return e;
    seen.push(e.event);
  }
  assert.fail(`no such event within ${EVENT_TIMEOUT_MS} ms; saw ${JSON.stringify(seen)}`);
}

test('transfers encode, hash and sign byte for byte as the Rust ledger code does', { skip }, () => {
  const vectors = JSON.parse(env.ICN_SDK_VECTORS);
  const { account, payment, createdAtMs, expected } = vectors.next;
  const built = signTransfer(nextTransfer(account, payment, createdAtMs), alice.key);
  assert.deepEqual(built, expected.transfer, 'the same fields as icn_ledger::client::next_transfer');
  assert.equal(hex(transferHash(built)), expected.hash);
  assert.equal(hex(encodeTransfer(built)), expected.encoding);
  // The same transfer from native values: signed, it is in the JSON form again.
  const t = expected.transfer;
  const bytes = (b) => new Uint8Array(Buffer.from(b, 'base64'));
  const native = { ...t, amount: BigInt(t.amount), payerSeq: BigInt(t.payerSeq), createdAtMs: Number(t.createdAtMs) };
  Object.assign(native, { prevHash: bytes(t.prevHash), deps: t.deps.map(bytes), signature: undefined });
  assert.deepEqual(signTransfer(native, alice.key), t);
  for (const { transfer, hash, encoding } of vectors.edges) {
    assert.equal(hex(encodeTransfer(transfer)), encoding, JSON.stringify(transfer));
    assert.equal(hex(transferHash(transfer)), hash, JSON.stringify(transfer));
  }
});

test('DIDs derive from the member keys as the node derives them', { skip }, () => {
  const raw = Buffer.from(createPublicKey(privateKey(alice.key)).export({ format: 'jwk' }).x, 'base64url');
  assert.equal(IcnClient.didFromPublicKey(raw), alice.did);
  assert.equal(didFromKey(bob.key), bob.did);
});

test('a login challenge is checked before it is signed, and signed for logging in only', { skip }, async () => {
  const first = new IcnClient({ baseUrl });
  await first.login(alice.key);
  const node = (await first.nodeStatus()).did;
  assert.ok(node.startsWith('did:icn:z'));
  const meant = new IcnClient({ baseUrl });
  await meant.login(alice.key, [], { node });
  assert.equal(meant.did, alice.did);
  // A client that meant another node (a gateway relaying that node's challenge) signs nothing.
  await assert.rejects(new IcnClient({ baseUrl }).login(alice.key, [], { node: bob.did }), (e) => {
    assert.ok(e instanceof TypeError && /not the expected node/.test(e.message), String(e));
    return true;
  });
  // What a malicious gateway would send instead of a challenge: a transfer's hash.
  const digest = transferHash(signTransfer({ coopId: coop, currency, payee: bob.did, amount: 1 }, alice.key));
  assert.throws(() => checkChallenge(digest, alice.did), /not a login challenge/);
  // And the purposes keep a signature for one from being valid for another.
  assert.notDeepEqual(signedBytes(PURPOSES.login, digest), signedBytes(PURPOSES.transfer, digest));
});

test('the cooperative statistics need no token', { skip }, async () => {
  const anonymous = new IcnClient({ baseUrl });
  const stats = await anonymous.getCoopStats(coop);
  assert.equal(stats.coopId, coop);
  assert.equal(stats.members, '3', 'the founder and two members');
  assert.equal(stats.transferCount, undefined, 'nothing paid yet: zero is left out');
  await refused(anonymous.getCoopStats('no-such-coop'), 404, 'NOT_FOUND', '');
  await refused(anonymous.peers(), 401, 'UNAUTHENTICATED', 'TOKEN_MISSING');
});

test('a member logs in, pays another, and both balances, the history and the transfer show it', { skip }, async () => {
  const a = new IcnClient({ baseUrl });
  const login = await a.login(alice.key);
  assert.ok(login.scopes.includes('ledger:write'), JSON.stringify(login));
  assert.equal(a.did, alice.did);
  const b = new IcnClient({ baseUrl });
  await b.login(bob.key);

  // The node runs every service but compute.
  const node = await a.nodeStatus();
  const serving = node.services.filter((s) => s.status === 'SERVING_STATUS_SERVING').map((s) => s.name);
  assert.deepEqual(serving.sort(), ['gateway', 'gossip', 'ledger', 'netd'], JSON.stringify(node));
  await a.peers();
  const { members } = await a.getCoop(coop);
  assert.ok([alice.did, bob.did].every((did) => members.some((m) => m.did === did)), JSON.stringify(members));
  assert.equal(balanceOf(await a.balance(coop, currency)), 0n);

  // The first transfer (no previous hash), the next (chained to it), and bob paying
  // back with the income he received as deps: the ledger checks each signature.
  const first = await a.transfer(coop, currency, bob.did, 250, { memo: 'from the JS SDK' });
  assert.equal(first.record.status, 'TRANSFER_STATUS_APPLIED', JSON.stringify(first));
  assert.equal(first.record.transfer.payerSeq, '1');
  assert.equal(first.record.hash, Buffer.from(transferHash(first.record.transfer)).toString('base64'));
  const second = await a.transfer(coop, currency, bob.did, 50n);
  assert.equal(second.record.status, 'TRANSFER_STATUS_APPLIED', JSON.stringify(second));
  assert.equal(second.record.transfer.prevHash, first.record.hash);
  const bobsAccount = (await b.balance(coop, currency)).account;
  assert.equal(bobsAccount.unclaimedIncoming.length, 2, JSON.stringify(bobsAccount));
  const back = await b.transfer(coop, currency, alice.did, '100', { idempotencyId: 'pay-back' });
  assert.equal(back.record.status, 'TRANSFER_STATUS_APPLIED', JSON.stringify(back));
  assert.deepEqual(back.record.transfer.deps, bobsAccount.unclaimedIncoming);

  assert.equal(balanceOf(await a.balance(coop, currency)), -200n);
  assert.equal(balanceOf(await b.balance(coop, currency)), 200n);
  assert.equal(balanceOf(await a.balance(coop, currency, bob.did)), 200n, 'anyone with ledger:read reads by DID');
  const { accounts } = await a.accounts(coop, { currency });
  assert.deepEqual(
    Object.fromEntries(accounts.filter((x) => x.balance).map((x) => [x.member, x.balance])),
    { [alice.did]: '-200', [bob.did]: '200' },
  );

  // Newest first; pages follow the cursor.
  const history = await a.history(coop, currency);
  assert.deepEqual(history.transfers.map((r) => r.hash), [back, second, first].map((r) => r.record.hash));
  const page = await a.history(coop, currency, { limit: 1 });
  assert.equal(page.transfers.length, 1);
  const rest = await a.history(coop, currency, { limit: 10, cursor: page.nextCursor, all: true });
  assert.deepEqual(rest.transfers.map((r) => r.hash), [second, first].map((r) => r.record.hash));

  const fetched = await b.getTransfer(toHex(first.record.hash));
  assert.deepEqual(fetched.record.transfer, first.record.transfer);
  await refused(b.getTransfer('00'.repeat(32)), 404, 'NOT_FOUND', '');

  // The same idempotency id again: the first outcome, not a second payment.
  const retry = await b.transfer(coop, currency, alice.did, '100', { idempotencyId: 'pay-back' });
  assert.equal(retry.duplicate, true);
  assert.equal(retry.record.hash, back.record.hash);
  assert.equal(balanceOf(await b.balance(coop, currency)), 200n);

  const stats = await new IcnClient({ baseUrl }).getCoopStats(coop);
  assert.equal(stats.transferCount, '3', JSON.stringify(stats));
});

test('the event stream carries transfers, replays after an id and goes on live', { skip }, async () => {
  const b = new IcnClient({ baseUrl });
  await b.login(bob.key);
  const { transfers } = await b.history(coop, currency);
  const isTransfer = (hash) => (e) => e.data.transfer?.record?.hash === hash;

  // From the start of what the gateway retains: the transfers made above.
  const oldest = await firstEvent(b, { kinds: ['transfer'], lastEventId: 0 }, isTransfer(transfers.at(-1).hash));
  assert.equal(oldest.event, 'transfer');
  assert.equal(oldest.id, oldest.data.position);
  const newest = await firstEvent(b, { kinds: ['transfer'], lastEventId: oldest.id }, isTransfer(transfers[0].hash));
  assert.ok(BigInt(newest.id) > BigInt(oldest.id));

  // After the last event bob saw: the next transfer, however late the stream connects.
  const a = new IcnClient({ baseUrl });
  await a.login(alice.key);
  const isLive = (e) => e.data.transfer?.record?.transfer?.memo === 'live';
  const live = firstEvent(b, { kinds: ['transfer'], lastEventId: newest.id }, isLive);
  const paid = await a.transfer(coop, currency, bob.did, 7, { memo: 'live' });
  const event = await live;
  assert.equal(event.data.transfer.record.hash, paid.record.hash);

  // Only the kinds asked for: the node runs no compute, so no task event comes, while
  // the transfers (and the ledger's gossip entries) retained are filtered out.
  const stop = new AbortController();
  setTimeout(() => stop.abort(), 500);
  const seen = [];
  for await (const e of a.events({ kinds: ['task'], lastEventId: 0, signal: stop.signal })) seen.push(e);
  assert.deepEqual(seen, []);
});

test('a member publishes an entry it signed to a topic and reads it back', { skip }, async () => {
  const topic = env.ICN_SDK_TOPIC;
  const a = new IcnClient({ baseUrl });
  await a.login(alice.key, ['gossip:read', 'gossip:write']);
  const { topics } = await a.topics();
  assert.ok(topics.some((t) => t.name === topic), JSON.stringify(topics));

  const entry = signEntry({ topic, seq: 1, payload: new TextEncoder().encode('hello from the JS SDK') }, alice.key);
  const published = await a.publishSigned(entry);
  assert.equal(published.entry.entry.hash, entry.hash, 'gossip computed the same hash and accepted the signature');
  const again = await a.publishSigned(entry);
  assert.equal(again.duplicate, true);

  const { entries } = await a.entries(topic, { author: alice.did, limit: 10 });
  assert.equal(entries.length, 1);
  assert.equal(Buffer.from(entries[0].entry.payload, 'base64').toString(), 'hello from the JS SDK');
  const forged = { ...signEntry({ topic, seq: 2, payload: 'AAAA' }, alice.key), payload: 'AAAB' };
  await assert.rejects(a.publishSigned(forged), (e) => e instanceof IcnError && [400, 403].includes(e.status));
});

test('under-scoped, revoked and missing tokens are refused with their reason', { skip }, async () => {
  const readOnly = new IcnClient({ baseUrl });
  const login = await readOnly.login(alice.key, ['ledger:read']);
  assert.deepEqual(login.scopes, ['ledger:read']);
  await refused(readOnly.transfer(coop, currency, bob.did, 1), 403, 'PERMISSION_DENIED', 'SCOPE_MISSING');
  await refused(readOnly.topics(), 403, 'PERMISSION_DENIED', 'SCOPE_MISSING');
  assert.equal(balanceOf(await readOnly.balance(coop, currency)) < 0n, true, 'reading is in scope');

  const a = new IcnClient({ baseUrl });
  await a.login(alice.key);
  const token = a.token;
  await a.revoke();
  assert.equal(a.token, undefined);
  await refused(a.nodeStatus(), 401, 'UNAUTHENTICATED', 'TOKEN_MISSING');
  const revoked = new IcnClient({ baseUrl, token, key: alice.key });
  await refused(revoked.nodeStatus(), 401, 'UNAUTHENTICATED', 'TOKEN_REVOKED');
  await refused(revoked.transfer(coop, currency, bob.did, 1), 401, 'UNAUTHENTICATED', 'TOKEN_REVOKED');
  await refused(revoked.events().next(), 401, 'UNAUTHENTICATED', 'TOKEN_REVOKED');

  await refused(new IcnClient({ baseUrl }).login(alice.key, ['superuser']), 400, 'INVALID_ARGUMENT', 'UNKNOWN_SCOPE');
  // A query the gateway cannot read (no currency) is refused before any service is asked.
  await assert.rejects(readOnly.history(coop, undefined), (e) => e.status === 400 && e.code === 'INVALID_ARGUMENT');
  await refused(new IcnClient({ baseUrl: 'http://127.0.0.1:9' }).getCoopStats(coop), 0, 'UNAVAILABLE', '');
});
