/**
 * Group change records: PROTOCOL.md section 10's worked example byte for
 * byte (as e2ee-core's test), the role rules, handing over (2.4), and a
 * chain the server tampered with.
 */
import { describe, expect, it } from 'vitest';

import {
  applyChange,
  decodeRecord,
  identityFromSecrets,
  recordBytes,
  recordHash,
  replayChain,
  signChange,
  toHex,
  type ChangeAction,
  type ChangeRecord,
  type IdentityKeyPair,
  type Membership,
  type Result,
} from '../../src/protocol/index.js';
import { must } from './vectors.js';

const rep = (b: number) => new Uint8Array(16).fill(b);
const anyone = (): boolean => true;
const EXAMPLE = [
  'a4e09292b651c278b9772c569f5fa9bb13d906b46ab68c9df9dc2b4409f8a2098139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b394',
  '222222222222222222222222222222220000000000000000000000000000000000000000000000000000000000000000000000000000000011111111111111111111111111111111a4e09292b651c278b9772c569f5fa9bb13d906b46ab68c9df9dc2b4409f8a2098139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b3940100047465616d000133333333333333333333333333333333038ba7116a3d9f1d9a398ae86d7ab9f1eebbd94a74352a5774bb562a8c5ef1144221389d95e2b10067f771457ec2c2a66baa23bcf4b5d4c9e6c59b25af0b801a06',
  '3e86645c6884be6b4789efb141f4ee8e2bbf87816a61613d64b8e36556e0ac1d',
  '2222222222222222222222222222222200000000000000013e86645c6884be6b4789efb141f4ee8e2bbf87816a61613d64b8e36556e0ac1d11111111111111111111111111111111a4e09292b651c278b9772c569f5fa9bb13d906b46ab68c9df9dc2b4409f8a2098139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b394024444444444444444444444444444444402e0fd522630d2ec8d4df86070a435a7c0570827df094bfbb491cb00a277d9a5f50d9cb19c2710a7fc27a918371538d3f2c0bf33c6373ae9c12367d83498b1d304',
];

const GROUP = rep(7);
const [OWNER, ADMIN, MEMBER, OUTSIDER] = [rep(1), rep(2), rep(3), rep(4)];
const person = (n: number): IdentityKeyPair =>
  must(identityFromSecrets(new Uint8Array(32).fill(n), new Uint8Array(32).fill(n + 100)));
const [owner, admin, member] = [person(1), person(2), person(3)];

function sign(
  who: IdentityKeyPair,
  id: Uint8Array,
  prev: ChangeRecord | undefined,
  a: ChangeAction,
): ChangeRecord {
  return must(signChange(who.sigSeed, who.idpub, id, GROUP, prev, a));
}

/** Owner creates with an admin; the admin adds a member. */
function chain(): ChangeRecord[] {
  const create = sign(owner, OWNER, undefined, { type: 'create', name: 'team', members: [[ADMIN, 'admin']] });
  return [create, sign(admin, ADMIN, create, { type: 'add', user: MEMBER, role: 'member' })];
}

describe('group change records', () => {
  it('the worked example of PROTOCOL.md section 10, byte for byte', () => {
    const o = must(identityFromSecrets(new Uint8Array(32).fill(1), new Uint8Array(32).fill(2)));
    const create = must(
      signChange(o.sigSeed, o.idpub, rep(0x11), rep(0x22), undefined, {
        type: 'create',
        name: 'team',
        members: [[rep(0x33), 'member']],
      }),
    );
    const add = must(
      signChange(o.sigSeed, o.idpub, rep(0x11), rep(0x22), create, {
        type: 'add',
        user: rep(0x44),
        role: 'admin',
      }),
    );
    expect([
      toHex(o.idpub),
      toHex(recordBytes(create)),
      toHex(recordHash(create)),
      toHex(recordBytes(add)),
    ]).toEqual(EXAMPLE);
    const m = must(replayChain([create, add], anyone));
    expect(m.epoch).toBe(1n);
    expect(m.members.size).toBe(3);
    expect(toHex(recordBytes(must(decodeRecord(recordBytes(add)))))).toBe(EXAMPLE[3]);
  });

  it('the role rules, as the Rust core and the server apply them', () => {
    const records = chain();
    const m = must(replayChain(records, anyone));
    const last = records[records.length - 1];
    const attempt = (who: IdentityKeyPair, id: Uint8Array, a: ChangeAction): Result<Membership> =>
      applyChange(m, sign(who, id, last, a), anyone);
    const refused = (r: Result<Membership>) => (r.ok ? 'applied' : r.error.kind);
    expect(refused(attempt(admin, ADMIN, { type: 'add', user: OUTSIDER, role: 'admin' }))).toBe('notAllowed');
    expect(attempt(owner, OWNER, { type: 'add', user: OUTSIDER, role: 'admin' }).ok).toBe(true);
    expect(refused(attempt(admin, ADMIN, { type: 'setRole', user: MEMBER, role: 'admin' }))).toBe(
      'notAllowed',
    );
    expect(refused(attempt(owner, OWNER, { type: 'add', user: OUTSIDER, role: 'owner' }))).toBe('notAllowed');
    expect(refused(attempt(admin, ADMIN, { type: 'remove', user: OWNER }))).toBe('notAllowed');
    expect(refused(attempt(owner, OWNER, { type: 'leave' }))).toBe('notAllowed');
    expect(refused(attempt(member, MEMBER, { type: 'rename', name: 'm' }))).toBe('notAllowed');
    expect(must(attempt(admin, ADMIN, { type: 'rename', name: 'new' })).name).toBe('new');
    expect(must(attempt(member, MEMBER, { type: 'leave' })).members.has(toHex(MEMBER))).toBe(false);
    // Handing over (2.4): only the owner, only to a member.
    expect(refused(attempt(admin, ADMIN, { type: 'transferOwnership', user: MEMBER }))).toBe('notAllowed');
    expect(refused(attempt(owner, OWNER, { type: 'transferOwnership', user: OUTSIDER }))).toBe('notAllowed');
    const handed = must(attempt(owner, OWNER, { type: 'transferOwnership', user: MEMBER }));
    expect(handed.members.get(toHex(MEMBER))?.role).toBe('owner');
    expect(handed.members.get(toHex(OWNER))?.role).toBe('admin');
    // The membership given is never changed.
    expect(m.members.get(toHex(OWNER))?.role).toBe('owner');
  });

  it('a tampered, reordered or foreign chain stops; a record under an untrusted key too', () => {
    const [create, add] = chain();
    if (!create || !add) throw new Error('two records');
    const bytes = recordBytes(add);
    bytes[bytes.length - 70] = (bytes[bytes.length - 70] ?? 0) ^ 1;
    const tampered = decodeRecord(bytes);
    if (tampered.ok) expect(replayChain([create, tampered.value], anyone).ok).toBe(false);
    expect(replayChain([add, create], anyone).ok).toBe(false);
    const notAdmin = (u: Uint8Array) => toHex(u) !== toHex(ADMIN);
    const r = replayChain([create, add], (u) => notAdmin(u));
    expect(r.ok ? 'applied' : r.error.kind).toBe('badSignature');
    for (const n of [0, 10, 200]) expect(decodeRecord(new Uint8Array(n)).ok).toBe(false);
    expect(decodeRecord(Uint8Array.of(...recordBytes(create), 0)).ok).toBe(false);
  });
});
