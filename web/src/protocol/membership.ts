/**
 * Group change records (docs/PROTOCOL.md section 10): each change signed by
 * the member who made it, chained by hash, numbered by epoch; a chain is
 * replayed into the membership it leaves, with the role rules. A record
 * that does not verify stops the chain there (the caller keeps what did).
 */
import { ed25519 } from '@noble/curves/ed25519.js';
import { sha256 } from '@noble/hashes/sha2.js';

import { concat, equalCt, toHex, u64be, utf8 } from './bytes.js';
import { fail, ok, type Result } from './errors.js';
import { verifySignature } from './keys.js';

export const CHANGE_LABEL = utf8('E2EEChat group change v2');
export const CHANGE_HASH_LABEL = utf8('E2EEChat group change hash v2');
export const MAX_MEMBERS = 1024;
export const MAX_NAME_BYTES = 256;

export type Role = 'owner' | 'admin' | 'member';
const ROLE_BYTE: Record<Role, number> = { owner: 1, admin: 2, member: 3 };

export type ChangeAction =
  | {
      readonly type: 'create';
      readonly name: string;
      readonly members: readonly (readonly [Uint8Array, Role])[];
    }
  | { readonly type: 'add'; readonly user: Uint8Array; readonly role: Role }
  | { readonly type: 'remove'; readonly user: Uint8Array }
  | { readonly type: 'setRole'; readonly user: Uint8Array; readonly role: Role }
  | { readonly type: 'leave' }
  | { readonly type: 'rename'; readonly name: string }
  /** Version 2.4. */
  | { readonly type: 'transferOwnership'; readonly user: Uint8Array };

export interface ChangeRecord {
  readonly groupId: Uint8Array;
  readonly epoch: bigint;
  readonly prevHash: Uint8Array;
  readonly signer: Uint8Array;
  readonly signerIdpub: Uint8Array;
  readonly action: ChangeAction;
  readonly signature: Uint8Array;
}

function nameBytes(name: string): Result<Uint8Array> {
  const b = utf8(name);
  if (b.length > MAX_NAME_BYTES) return fail('tooLong', 'a group name is at most 256 bytes');
  return ok(concat(Uint8Array.of(b.length >> 8, b.length & 0xff), b));
}

function encodeAction(a: ChangeAction): Result<Uint8Array> {
  switch (a.type) {
    case 'create': {
      const n = nameBytes(a.name);
      if (!n.ok) return n;
      if (a.members.length + 1 > MAX_MEMBERS) return fail('tooLong', 'too many members');
      const members = a.members.map(([u, r]) => concat(u, Uint8Array.of(ROLE_BYTE[r])));
      const count = Uint8Array.of(a.members.length >> 8, a.members.length & 0xff);
      return ok(concat(Uint8Array.of(1), n.value, count, ...members));
    }
    case 'add':
      return ok(concat(Uint8Array.of(2), a.user, Uint8Array.of(ROLE_BYTE[a.role])));
    case 'remove':
      return ok(concat(Uint8Array.of(3), a.user));
    case 'setRole':
      return ok(concat(Uint8Array.of(4), a.user, Uint8Array.of(ROLE_BYTE[a.role])));
    case 'leave':
      return ok(Uint8Array.of(5));
    case 'rename': {
      const n = nameBytes(a.name);
      return n.ok ? ok(concat(Uint8Array.of(6), n.value)) : n;
    }
    case 'transferOwnership':
      return ok(concat(Uint8Array.of(7), a.user));
  }
}

function body(r: Omit<ChangeRecord, 'signature'>): Result<Uint8Array> {
  const action = encodeAction(r.action);
  if (!action.ok) return action;
  return ok(concat(r.groupId, u64be(r.epoch), r.prevHash, r.signer, r.signerIdpub, action.value));
}

/** The wire form: the signed fields, then the signature. */
export function recordBytes(r: ChangeRecord): Uint8Array {
  const b = body(r);
  // A record that was signed encodes; an unencodable one was never made.
  return b.ok ? concat(b.value, r.signature) : new Uint8Array(0);
}

/** `SHA-256("E2EEChat group change hash v2" || wire record)`. */
export function recordHash(r: ChangeRecord): Uint8Array {
  return sha256(concat(CHANGE_HASH_LABEL, recordBytes(r)));
}

/** Signs a change on top of `prev` (none for the first, a create). */
export function signChange(
  sigSeed: Uint8Array,
  signerIdpub: Uint8Array,
  signer: Uint8Array,
  groupId: Uint8Array,
  prev: ChangeRecord | undefined,
  action: ChangeAction,
): Result<ChangeRecord> {
  const unsigned = {
    groupId,
    epoch: prev ? prev.epoch + 1n : 0n,
    prevHash: prev ? recordHash(prev) : new Uint8Array(32),
    signer,
    signerIdpub,
    action,
  };
  const b = body(unsigned);
  if (!b.ok) return b;
  return ok({ ...unsigned, signature: ed25519.sign(concat(CHANGE_LABEL, b.value), sigSeed) });
}

class Reader {
  private at = 0;
  constructor(private readonly b: Uint8Array) {}
  take(n: number): Uint8Array | undefined {
    if (this.at + n > this.b.length) return undefined;
    const out = this.b.slice(this.at, this.at + n);
    this.at += n;
    return out;
  }
  u8(): number | undefined {
    return this.take(1)?.[0];
  }
  u16(): number | undefined {
    const x = this.take(2);
    return x ? ((x[0] ?? 0) << 8) | (x[1] ?? 0) : undefined;
  }
  left(): number {
    return this.b.length - this.at;
  }
}

function role(b: number | undefined): Result<Role> {
  if (b === 1) return ok('owner');
  if (b === 2) return ok('admin');
  if (b === 3) return ok('member');
  return b === undefined ? fail('truncated', 'a role') : fail('invalidField', 'role');
}

function readName(r: Reader): Result<string> {
  const n = r.u16();
  if (n === undefined) return fail('truncated', 'a name');
  if (n > MAX_NAME_BYTES) return fail('invalidField', 'name');
  const b = r.take(n);
  if (!b) return fail('truncated', 'a name');
  try {
    return ok(new TextDecoder('utf-8', { fatal: true }).decode(b));
  } catch {
    return fail('invalidField', 'name');
  }
}

function user(r: Reader): Result<Uint8Array> {
  const u = r.take(16);
  return u ? ok(u) : fail('truncated', 'a user id');
}

function decodeAction(r: Reader): Result<ChangeAction> {
  const tag = r.u8();
  switch (tag) {
    case 1: {
      const name = readName(r);
      if (!name.ok) return name;
      const n = r.u16();
      if (n === undefined) return fail('truncated', 'members');
      if (n > MAX_MEMBERS) return fail('invalidField', 'members');
      const members: [Uint8Array, Role][] = [];
      for (let i = 0; i < n; i++) {
        const u = user(r);
        if (!u.ok) return u;
        const ro = role(r.u8());
        if (!ro.ok) return ro;
        members.push([u.value, ro.value]);
      }
      return ok({ type: 'create', name: name.value, members });
    }
    case 2:
    case 4: {
      const u = user(r);
      if (!u.ok) return u;
      const ro = role(r.u8());
      if (!ro.ok) return ro;
      return ok(
        tag === 2
          ? { type: 'add', user: u.value, role: ro.value }
          : { type: 'setRole', user: u.value, role: ro.value },
      );
    }
    case 3: {
      const u = user(r);
      return u.ok ? ok({ type: 'remove', user: u.value }) : u;
    }
    case 5:
      return ok({ type: 'leave' });
    case 6: {
      const name = readName(r);
      return name.ok ? ok({ type: 'rename', name: name.value }) : name;
    }
    case 7: {
      const u = user(r);
      return u.ok ? ok({ type: 'transferOwnership', user: u.value }) : u;
    }
    case undefined:
      return fail('truncated', 'an action');
    default:
      return fail('unknownKind', `action ${tag}`);
  }
}

/** Parses the wire form; checks the encoding, not the signature. */
export function decodeRecord(bytes: Uint8Array): Result<ChangeRecord> {
  const r = new Reader(bytes);
  const groupId = r.take(16);
  const epochBytes = r.take(8);
  const prevHash = r.take(32);
  const signer = r.take(16);
  const signerIdpub = r.take(64);
  if (!groupId || !epochBytes || !prevHash || !signer || !signerIdpub) return fail('truncated', 'a record');
  const action = decodeAction(r);
  if (!action.ok) return action;
  if (r.left() < 64) return fail('truncated', 'the signature');
  if (r.left() > 64) return fail('trailingBytes', 'bytes after the signature');
  const signature = r.take(64) ?? new Uint8Array(64);
  const epoch = new DataView(epochBytes.buffer).getBigUint64(0, false);
  return ok({ groupId, epoch, prevHash, signer, signerIdpub, action: action.value, signature });
}

export function verifyRecordSignature(r: ChangeRecord): boolean {
  const b = body(r);
  return b.ok && verifySignature(r.signerIdpub.subarray(32), concat(CHANGE_LABEL, b.value), r.signature);
}

export interface VerifiedMember {
  readonly role: Role;
  readonly addedBy: string;
  readonly addedAtEpoch: bigint;
}

/** The membership a verified chain leaves; members by hex user id. */
export interface Membership {
  readonly groupId: Uint8Array;
  readonly epoch: bigint;
  readonly head: Uint8Array;
  readonly name: string;
  readonly members: ReadonlyMap<string, VerifiedMember>;
}

/** Whether `idpub` may sign for `user` (the identity pinned for them, or any for a user not pinned yet). */
export type Trusted = (user: Uint8Array, idpub: Uint8Array) => boolean;

const notAllowed = (epoch: bigint): Result<never> =>
  fail('notAllowed', `change ${epoch} is not allowed for its signer`);

function genesis(r: ChangeRecord, trusted: Trusted): Result<Membership> {
  if (r.epoch !== 0n || !equalCt(r.prevHash, new Uint8Array(32)) || r.action.type !== 'create') {
    return fail('brokenChain', 'the first record is not a create at epoch 0');
  }
  if (!verifyRecordSignature(r)) return fail('badSignature', 'change 0 is not validly signed');
  if (!trusted(r.signer, r.signerIdpub))
    return fail('badSignature', 'change 0 is signed by an untrusted identity');
  const members = new Map<string, VerifiedMember>();
  const signer = toHex(r.signer);
  members.set(signer, { role: 'owner', addedBy: signer, addedAtEpoch: 0n });
  for (const [u, ro] of r.action.members) {
    const id = toHex(u);
    if (ro === 'owner' || members.has(id)) return notAllowed(0n);
    members.set(id, { role: ro, addedBy: signer, addedAtEpoch: 0n });
  }
  return ok({ groupId: r.groupId, epoch: 0n, head: recordHash(r), name: r.action.name, members });
}

/** Applies the next record after every check; the given membership is never changed. */
export function applyChange(m: Membership, r: ChangeRecord, trusted: Trusted): Result<Membership> {
  const e = r.epoch;
  if (!equalCt(r.groupId, m.groupId)) return fail('brokenChain', `change ${e} is for another group`);
  if (e !== m.epoch + 1n) return fail('brokenChain', `expected change ${m.epoch + 1n}, got ${e}`);
  if (!equalCt(r.prevHash, m.head)) return fail('brokenChain', `change ${e} does not follow the head`);
  if (!verifyRecordSignature(r)) return fail('badSignature', `change ${e} is not validly signed`);
  if (!trusted(r.signer, r.signerIdpub))
    return fail('badSignature', `change ${e} is signed by an untrusted identity`);
  const signerId = toHex(r.signer);
  const signerRole = m.members.get(signerId)?.role;
  if (!signerRole) return fail('notAllowed', `the signer of change ${e} is not a member`);
  const manages = signerRole === 'owner' || signerRole === 'admin';
  const next = new Map(m.members);
  let name = m.name;
  const a = r.action;
  switch (a.type) {
    case 'create':
      return notAllowed(e);
    case 'add': {
      const allowed = a.role === 'admin' ? signerRole === 'owner' : a.role === 'member' && manages;
      if (!allowed || next.has(toHex(a.user)) || next.size >= MAX_MEMBERS) return notAllowed(e);
      next.set(toHex(a.user), { role: a.role, addedBy: signerId, addedAtEpoch: e });
      break;
    }
    case 'remove': {
      const target = next.get(toHex(a.user))?.role;
      const allowed = target === 'admin' ? signerRole === 'owner' : target === 'member' && manages;
      if (!allowed) return notAllowed(e);
      next.delete(toHex(a.user));
      break;
    }
    case 'setRole': {
      const target = next.get(toHex(a.user));
      if (signerRole !== 'owner' || a.role === 'owner' || !target || target.role === 'owner')
        return notAllowed(e);
      next.set(toHex(a.user), { ...target, role: a.role });
      break;
    }
    case 'leave':
      if (signerRole === 'owner') return notAllowed(e);
      next.delete(signerId);
      break;
    case 'rename':
      if (!manages) return notAllowed(e);
      name = a.name;
      break;
    case 'transferOwnership': {
      const target = next.get(toHex(a.user));
      const self = next.get(signerId);
      if (signerRole !== 'owner' || !target || !self || equalCt(a.user, r.signer)) return notAllowed(e);
      next.set(toHex(a.user), { ...target, role: 'owner' });
      next.set(signerId, { ...self, role: 'admin' });
      break;
    }
  }
  return ok({ groupId: m.groupId, epoch: e, head: recordHash(r), name, members: next });
}

/** Verifies a chain from its create. */
export function replayChain(records: readonly ChangeRecord[], trusted: Trusted): Result<Membership> {
  const [first, ...rest] = records;
  if (!first) return fail('brokenChain', 'an empty chain');
  let m = genesis(first, trusted);
  for (const r of rest) {
    if (!m.ok) return m;
    m = applyChange(m.value, r, trusted);
  }
  return m;
}
