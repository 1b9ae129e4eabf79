// Types of icn.mjs, the ICN gateway SDK.
//
// Bodies are the gateway's protobuf messages in the proto3 JSON mapping: lowerCamelCase
// names, 64-bit integers as decimal strings, bytes as base64 strings, enums by their
// full name, and fields at their default value (0, "", false, []) left out, hence
// optional here.

import type { KeyObject } from 'node:crypto';

/** A 64-bit integer as JSON carries it: a decimal string. */
export type Int64 = string;
/** Bytes as JSON carries them: standard base64. */
export type Base64 = string;
/** An integer the SDK accepts: a safe-integer number, a bigint or a decimal string. */
export type IntegerLike = number | bigint | string;
/** Bytes the SDK accepts: raw, or base64 as JSON carries them. */
export type BytesLike = Uint8Array | ArrayBuffer | Base64;
/** A member's Ed25519 private key: a KeyObject, PKCS#8 DER (v1 or v2) or a PKCS#8 PEM string. */
export type PrivateKeyLike = KeyObject | Uint8Array | ArrayBuffer | string;

/** A non-2xx answer of the gateway, or none at all (`status` 0). */
export class IcnError extends Error {
  constructor(fields: { status: number; code: string; reason?: string; message: string; cause?: unknown });
  readonly name: 'IcnError';
  /** HTTP status; 0 when the gateway could not be reached or did not answer in time. */
  readonly status: number;
  /** gRPC code name, such as `PERMISSION_DENIED` or `UNAUTHENTICATED`. */
  readonly code: string;
  /** Finer, stable reason such as `TOKEN_REVOKED`, `SCOPE_MISSING`, `RATE_LIMITED`; often empty. */
  readonly reason: string;
}

// --- auth

export type Scope =
  | 'gossip:read'
  | 'gossip:write'
  | 'ledger:read'
  | 'ledger:write'
  | 'compute:read'
  | 'compute:write'
  | 'admin';

export interface LoginResponse {
  token: string;
  tokenId: string;
  scopes: Scope[];
  expiresAtMs: Int64;
}

// --- node

export type ServingStatus =
  | 'SERVING_STATUS_UNSPECIFIED'
  | 'SERVING_STATUS_SERVING'
  | 'SERVING_STATUS_NOT_SERVING'
  | 'SERVING_STATUS_UNREACHABLE';

export interface ServiceInfo {
  service?: string;
  version?: string;
  did?: string;
  limitedMode?: boolean;
  startedAtMs?: Int64;
}

export interface NodeStatusResponse {
  did?: string;
  limitedMode?: boolean;
  services?: { name?: string; status?: ServingStatus; info?: ServiceInfo; error?: string }[];
  connectedPeers?: number;
  relayAddress?: string;
}

export type PeerState =
  | 'PEER_STATE_UNSPECIFIED'
  | 'PEER_STATE_CONNECTING'
  | 'PEER_STATE_CONNECTED'
  | 'PEER_STATE_RECONNECTING'
  | 'PEER_STATE_CLOSED'
  | 'PEER_STATE_FAILED';

/** `icn.net.v1.Path`: which rung of the connection ladder a connection uses. */
export type PeerPath = 'PATH_UNSPECIFIED' | 'PATH_DIRECT' | 'PATH_ICE_HOST' | 'PATH_ICE_SRFLX' | 'PATH_TURN_RELAY';

export interface Peer {
  did?: string;
  state?: PeerState;
  path?: PeerPath;
  remoteAddress?: string;
  advertisedAddresses?: string[];
  rttUs?: Int64;
  incarnation?: string;
  x25519PublicKey?: string;
  outbound?: boolean;
  connectedAtMs?: Int64;
  messagesSent?: Int64;
  messagesReceived?: Int64;
  bytesSent?: Int64;
  bytesReceived?: Int64;
  attempt?: number;
  nextAttemptAtMs?: Int64;
  lastError?: string;
}

export interface ListPeersResponse {
  peers?: Peer[];
}

// --- topics

export interface Acl {
  public?: Record<string, never>;
  minTrust?: { score?: number };
  participants?: { dids?: string[] };
}

export interface Topic {
  name?: string;
  acl?: Acl;
  maxEntries?: Int64;
  scope?: 'TOPIC_SCOPE_UNSPECIFIED' | 'TOPIC_SCOPE_LOCAL' | 'TOPIC_SCOPE_NETWORK';
  creator?: string;
  createdAtMs?: Int64;
  revision?: Int64;
  updatedAtMs?: Int64;
  signature?: Base64;
  /** The record's format: 0 is this release's; a later release's is taken once upgraded. */
  format?: number;
}

export interface Entry {
  /** SHA-256 of the encoding with `hash` and `signature` empty. */
  hash?: Base64;
  topic?: string;
  author?: string;
  seq?: Int64;
  payload?: Base64;
  compressed?: boolean;
  timestampMs?: Int64;
  signature?: Base64;
  /** The record's format: 0 is this release's; a later release's is taken once upgraded. */
  format?: number;
}

export interface StoredEntry {
  entry?: Entry;
  position?: Int64;
  receivedAtMs?: Int64;
}

export interface ListTopicsResponse {
  topics?: Topic[];
  nextCursor?: string;
}

export interface GetEntriesResponse {
  entries?: StoredEntry[];
  nextCursor?: string;
}

export interface PublishResponse {
  entry?: StoredEntry;
  duplicate?: boolean;
}

// --- ledger

export type MemberRole = 'MEMBER_ROLE_UNSPECIFIED' | 'MEMBER_ROLE_MEMBER' | 'MEMBER_ROLE_ADMIN' | 'MEMBER_ROLE_REMOVED';

export interface Coop {
  id?: string;
  name?: string;
  founder?: string;
  createdAtMs?: Int64;
  signature?: Base64;
  /** The record's format: 0 is this release's; a later release's is taken once upgraded. */
  format?: number;
}

export interface Member {
  did?: string;
  role?: MemberRole;
  admittedAtMs?: Int64;
  admittedBy?: string;
}

export interface Currency {
  coopId?: string;
  symbol?: string;
  decimals?: number;
  defaultCreditLimit?: Int64;
  description?: string;
  signer?: string;
  createdAtMs?: Int64;
  signature?: Base64;
  /** The record's format: 0 is this release's; a later release's is taken once upgraded. */
  format?: number;
}

/** The nodes whose votes certify the cooperative's transfers, and the quorum. */
export interface Validators {
  coopId?: string;
  validators?: string[];
  quorum?: number;
  signer?: string;
  createdAtMs?: Int64;
  signature?: Base64;
  format?: number;
}

export interface GetCoopResponse {
  coop?: Coop;
  members?: Member[];
  currencies?: Currency[];
  /** The validator set in force now, if the cooperative has one. */
  validators?: Validators;
}

export interface CurrencyStats {
  symbol?: string;
  decimals?: number;
  accounts?: Int64;
  transferCount?: Int64;
  volume?: Int64;
  outstandingCredit?: Int64;
  pendingTransfers?: Int64;
  quarantinedTransfers?: Int64;
}

export interface CoopStatsResponse {
  coopId?: string;
  name?: string;
  members?: Int64;
  currencies?: CurrencyStats[];
  transferCount?: Int64;
  computedAtMs?: Int64;
}

/** A member's balance in one currency, and where its next transfer follows on. */
export interface Account {
  coopId?: string;
  currency?: string;
  member?: string;
  balance?: Int64;
  creditLimit?: Int64;
  seq?: Int64;
  headHash?: Base64;
  pending?: number;
  updatedAtMs?: Int64;
  unclaimedIncoming?: Base64[];
  tipSeq?: Int64;
  tipHash?: Base64;
}

/** A payment signed by its payer (`icn.ledger.v1.Transfer`). */
export interface Transfer {
  coopId?: string;
  currency?: string;
  payer?: string;
  payee?: string;
  amount?: Int64;
  memo?: string;
  idempotencyId?: string;
  payerSeq?: Int64;
  prevHash?: Base64;
  deps?: Base64[];
  createdAtMs?: Int64;
  signature?: Base64;
  /** The record's format: 0 is this release's; a later release's is taken once upgraded. */
  format?: number;
}

/** A transfer with values in any form the encoder accepts. */
export interface TransferInput {
  coopId?: string;
  currency?: string;
  payer?: string;
  payee?: string;
  amount?: IntegerLike;
  memo?: string;
  idempotencyId?: string;
  payerSeq?: IntegerLike;
  prevHash?: BytesLike;
  deps?: BytesLike[];
  createdAtMs?: IntegerLike;
  signature?: BytesLike;
  /** The record format: 0 (or absent) is this release's. */
  format?: number;
}

export type TransferStatus =
  | 'TRANSFER_STATUS_UNSPECIFIED'
  | 'TRANSFER_STATUS_APPLIED'
  | 'TRANSFER_STATUS_PENDING_DEPS'
  | 'TRANSFER_STATUS_QUARANTINED'
  | 'TRANSFER_STATUS_REJECTED';

export type TransferRejection =
  | 'TRANSFER_REJECTION_UNSPECIFIED'
  | 'TRANSFER_REJECTION_BAD_SIGNATURE'
  | 'TRANSFER_REJECTION_UNKNOWN_COOP'
  | 'TRANSFER_REJECTION_UNKNOWN_CURRENCY'
  | 'TRANSFER_REJECTION_NOT_A_MEMBER'
  | 'TRANSFER_REJECTION_INVALID_AMOUNT'
  | 'TRANSFER_REJECTION_BAD_SEQUENCE'
  | 'TRANSFER_REJECTION_BROKEN_CHAIN'
  | 'TRANSFER_REJECTION_INVALID_DEP'
  | 'TRANSFER_REJECTION_BELOW_FLOOR'
  | 'TRANSFER_REJECTION_MALFORMED'
  | 'TRANSFER_REJECTION_BAD_TIME';

export interface TransferRecord {
  hash?: Base64;
  transfer?: Transfer;
  status?: TransferStatus;
  rejection?: TransferRejection;
  detail?: string;
  missingDeps?: Base64[];
  receivedAtMs?: Int64;
  appliedAtMs?: Int64;
  /** Votes counted from the cooperative's validators, and the quorum that certifies. */
  votes?: number;
  quorum?: number;
  /** Final for the payee: no rival the payer signs later can displace it. */
  certified?: boolean;
}

export interface GetBalanceResponse {
  account?: Account;
}

export interface ListAccountsResponse {
  accounts?: Account[];
  nextCursor?: string;
}

export interface GetHistoryResponse {
  transfers?: TransferRecord[];
  nextCursor?: string;
}

export interface SubmitTransferResponse {
  record?: TransferRecord;
  /** True when this transfer or its idempotency id was submitted before. */
  duplicate?: boolean;
}

export interface GetTransferResponse {
  record?: TransferRecord;
}

/** What a member wants to pay. */
export interface Payment {
  coopId: string;
  currency: string;
  payee: string;
  /** Minor units of the currency, greater than zero. */
  amount: IntegerLike;
  memo?: string;
  /** Empty: `seq-<payerSeq>`, so a retry of the same transfer is recognised. */
  idempotencyId?: string;
}

// --- events

export type EventKind = 'gossip_entry' | 'transfer' | 'task' | 'peer';

/** `icn.gateway.v1.Event`: one of the kind fields is set. */
export interface GatewayEvent {
  position?: Int64;
  atMs?: Int64;
  /** Events were missed: the stream resumed after retention, or (with `source`) the
   * gateway lost its feed from that source for a while; re-read it to catch up. */
  gap?: { firstAvailable?: Int64; missed?: Int64; source?: string };
  gossipEntry?: { entry?: StoredEntry };
  transfer?: { record?: TransferRecord };
  /** `icn.compute.v1.TaskEvent`. */
  task?: Record<string, unknown>;
  peer?: { peer?: Peer };
}

export interface ServerSentEvent {
  /** The event's position: pass it as `lastEventId` to resume after it. */
  id: string | undefined;
  /** Its kind, or `gap`. */
  event: EventKind | 'gap' | string;
  data: GatewayEvent;
}

export interface EventsOptions {
  kinds?: EventKind[];
  topics?: string[];
  /** Start after this event (retained ones are replayed); default: from now on. */
  lastEventId?: string | number;
  /** Ends the stream (the iterator finishes without an error). */
  signal?: AbortSignal;
  /** Reconnect from the last event seen when an open stream ends or breaks (default true). */
  reconnect?: boolean;
  /** Wait before reconnecting unless the server sent `retry:` (default 1000 ms). */
  retryMs?: number;
}

export interface Page {
  limit?: number;
  cursor?: string;
}

// --- the client

export interface IcnClientOptions {
  /** The gateway's `api.http_listen` as a URL, such as `http://127.0.0.1:8080`. */
  baseUrl: string | URL;
  /** A token from an earlier login. */
  token?: string;
  /** The member's key, to make transfers with `token`. */
  key?: PrivateKeyLike;
  /** How long one request may take (default 30000 ms); event streams are not bounded. */
  timeoutMs?: number;
}

export class IcnClient {
  constructor(options: IcnClientOptions);
  /** The `did:icn:` DID of a raw 32-byte Ed25519 public key. */
  static didFromPublicKey(raw32: Uint8Array): string;
  /** The bearer token in use, if any. */
  readonly token: string | undefined;
  /** The DID of the key given to the constructor or to `login`. */
  readonly did: string | undefined;

  /**
   * Challenge (checked: `checkChallenge`), signature for the login purpose, token: kept
   * with the key for the calls that follow. `node`: the DID of the node meant.
   */
  login(key: PrivateKeyLike, scopes?: Scope[], options?: { node?: string }): Promise<LoginResponse>;
  /** Revokes this client's token (empty id; it then has none) or, for an admin, any. */
  revoke(tokenId?: string): Promise<Record<string, never>>;

  /** Needs no token; answers 503 with `NOT_SERVING` too rather than throwing. */
  health(): Promise<{ status: 'SERVING' | 'NOT_SERVING' }>;
  nodeStatus(): Promise<NodeStatusResponse>;
  peers(): Promise<ListPeersResponse>;
  /** The OpenAPI 3.1 document; needs no token. */
  openapi(): Promise<Record<string, unknown>>;

  topics(page?: Page): Promise<ListTopicsResponse>;
  entries(topic: string, options?: Page & { author?: string }): Promise<GetEntriesResponse>;
  /** Publishes an entry the caller signed (`signEntry`). */
  publishSigned(entry: Entry): Promise<PublishResponse>;

  getCoop(coopId: string): Promise<GetCoopResponse>;
  /** Needs no token. */
  getCoopStats(coopId: string): Promise<CoopStatsResponse>;
  accounts(coopId: string, options?: Page & { currency?: string; member?: string }): Promise<ListAccountsResponse>;
  /** The caller's account (`me`), or a member's by DID. */
  balance(coopId: string, currency: string, member?: string): Promise<GetBalanceResponse>;
  /** Newest first; `all` adds pending, quarantined and rejected transfers. */
  history(
    coopId: string,
    currency: string,
    options?: Page & { member?: string; all?: boolean },
  ): Promise<GetHistoryResponse>;
  /** Builds the next transfer from the caller's account, signs it with the logged-in key, submits it. */
  transfer(
    coopId: string,
    currency: string,
    payeeDid: string,
    amountMinorUnits: IntegerLike,
    options?: { memo?: string; idempotencyId?: string },
  ): Promise<SubmitTransferResponse>;
  /** Submits a transfer the caller signed as payer (`signTransfer`). */
  submitTransfer(transfer: Transfer): Promise<SubmitTransferResponse>;
  /** By hash: hex, or bytes. */
  getTransfer(hash: string | Uint8Array): Promise<GetTransferResponse>;

  /** Live events the caller may see; see `EventsOptions`. */
  events(options?: EventsOptions): AsyncGenerator<ServerSentEvent, void, undefined>;
}

// --- helpers

/** The `did:icn:` DID of a raw 32-byte Ed25519 public key. */
export function didFromPublicKey(raw32: Uint8Array): string;
/** The DID of the member holding `key`. */
export function didFromKey(key: PrivateKeyLike): string;
/** The key as a node:crypto KeyObject; throws a TypeError unless it is an Ed25519 private key. */
export function privateKey(key: PrivateKeyLike): KeyObject;

/** The protobuf encoding of a transfer, byte for byte as prost writes it. */
export function encodeTransfer(transfer: TransferInput): Uint8Array;
/** SHA-256 of the encoding with `signature` empty: what the payer signs, and the transfer's id. */
export function transferHash(transfer: TransferInput): Uint8Array;
/** The payer's next transfer after its own `account`, unsigned and without payer. */
export function nextTransfer(account: Account, payment: Payment, createdAtMs: IntegerLike): Transfer;
/** The transfer signed by the member holding `key`, who becomes its payer. */
export function signTransfer(transfer: TransferInput, key: PrivateKeyLike): Transfer;

/** The protobuf encoding of a gossip entry. */
export function encodeEntry(entry: {
  hash?: BytesLike;
  topic?: string;
  author?: string;
  seq?: IntegerLike;
  payload?: BytesLike;
  compressed?: boolean;
  timestampMs?: IntegerLike;
  signature?: BytesLike;
}): Uint8Array;
/** An entry hashed and signed by the member holding `key`, its author. */
export function signEntry(
  entry: { topic: string; seq: IntegerLike; payload: BytesLike; compressed?: boolean; timestampMs?: IntegerLike },
  key: PrivateKeyLike,
): Entry;

/** The context of each purpose a member signs for (signing format v1). */
export const PURPOSES: Readonly<{ transfer: string; gossipEntry: string; login: string }>;
/** What a signature for `purpose` over `message` covers: context, a zero byte, message. */
export function signedBytes(purpose: string, message: BytesLike): Uint8Array;
/** Throws a TypeError unless `challenge` is a login challenge for `did` (from `node`, if given); returns the node's DID. */
export function checkChallenge(challenge: BytesLike, did: string, node?: string): string;

/** Lower-case hex of bytes, or of base64. */
export function toHex(bytes: BytesLike): string;
