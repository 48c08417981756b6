/**
 * crates/e2ee-core/tests/data/cross-v2.json, written by the Rust core from
 * fixed seeds (tests/it/cross_vectors.rs), replayed here byte for byte: a
 * PQXDH session with turns and out-of-order delivery both ways, a group's
 * chains across a rekey, a membership chain with every action, a sealed
 * provisioning message, a payload of every kind, an attachment. A byte
 * changed on either side fails one of the two tests.
 */
import { describe, expect, it } from 'vitest';

import {
  decodeDistribution,
  decodeEnvelope,
  decodePayload,
  decodeRecord,
  decodeSenderKeyEnvelope,
  decrypt,
  encodeMessage,
  encodePayload,
  encodePreKey,
  encrypt,
  identityFromSecrets,
  kemFromSeed,
  linkCode,
  linkCodeText,
  openAttachment,
  openProvision,
  padPayload,
  parseLinkCode,
  pqxdhInitiate,
  pqxdhRespond,
  recordBytes,
  recordHash,
  replayChain,
  sealAttachment,
  sealProvision,
  senderDecrypt,
  signChange,
  toHex,
  unpad,
  x25519Public,
  type ChangeRecord,
  type IdentityKeyPair,
  type RatchetState,
} from '../../src/protocol/index.js';
import { hex, must, vectors } from './vectors.js';

type Row = Record<string, unknown>;
const v = vectors('cross-v2.json') as Record<string, Row>;

function identityOf(row: unknown): IdentityKeyPair {
  const r = row as Row;
  const id = must(identityFromSecrets(hex(r['ik_priv']), hex(r['sig_seed'])));
  expect(toHex(id.idpub)).toBe(r['idpub']);
  return id;
}

describe('cross-v2.json', () => {
  it('the session: PQXDH, out of order both ways, turns, byte for byte', () => {
    const s = v['session'] as Row;
    const ids = s['identities'] as Row;
    const alice = identityOf(ids['alice']);
    const bob = identityOf(ids['bob']);
    const pre = s['bob_prekeys'] as Row;
    const drawn = hex(s['alice_drawn']);
    const [ek, m, first] = [drawn.slice(0, 32), drawn.slice(32, 64), drawn.slice(64, 96)];
    const kp = must(kemFromSeed(hex(pre['pqpk_seed'])));
    const started = must(
      pqxdhInitiate(
        alice,
        {
          idpub: bob.idpub,
          signedPrekeyId: pre['spk_id'] as number,
          signedPrekey: hex(pre['spk_pub']),
          oneTimePrekeyId: pre['opk_id'] as number,
          oneTimePrekey: x25519Public(hex(pre['opk_priv'])),
          pqPrekeyId: pre['pqpk_id'] as number,
          pqPrekey: kp.encapsulationKey,
        },
        ek,
        m,
        first,
      ),
    );
    let a: RatchetState = started.state;
    let aliceHeard = false;
    let b: RatchetState | undefined;
    for (const [i, step] of (s['steps'] as Row[]).entries()) {
      const op = step['op'] as string;
      if (op.endsWith('_encrypt')) {
        const alices = op === 'alice_encrypt';
        const out = must(encrypt(alices ? a : (b as RatchetState), hex(step['plaintext'])));
        const bytes =
          alices && !aliceHeard ? encodePreKey(started.prekey, out.message) : encodeMessage(out.message);
        expect(toHex(bytes), `step ${i}`).toBe(step['envelope']);
        if (alices) a = out.state;
        else b = out.state;
        continue;
      }
      const env = must(decodeEnvelope(hex(step['envelope'])));
      const next = step['drawn'] === '' ? new Uint8Array(32).fill(0xee) : hex(step['drawn']);
      if (op === 'bob_decrypt') {
        if (!b) {
          if (env.kind !== 'prekey') throw new Error('a PreKey message first');
          b = must(
            pqxdhRespond(bob, env.prekey, hex(pre['spk_priv']), hex(pre['opk_priv']), kp.decapsulationKey),
          );
        }
        const out = must(decrypt(b, env.message, next));
        expect(toHex(out.plaintext), `step ${i}`).toBe(step['plaintext']);
        b = out.state;
      } else {
        const out = must(decrypt(a, env.message, next));
        expect(toHex(out.plaintext), `step ${i}`).toBe(step['plaintext']);
        a = out.state;
        aliceHeard = true;
      }
    }
  });

  it("the group's chains across a rekey", () => {
    for (const chain of (v['group'] as Row)['chains'] as Row[]) {
      let r = must(decodeDistribution(hex(chain['distribution'])));
      const texts = chain['plaintexts'] as string[];
      for (const [i, m] of (chain['messages'] as string[]).entries()) {
        const out = must(senderDecrypt(r, must(decodeSenderKeyEnvelope(hex(m)))));
        expect(new TextDecoder().decode(must(unpad(out.plaintext)))).toBe(texts[i]);
        r = out.chain;
      }
    }
  });

  it('the membership chain: every action, re-signed byte for byte, replayed to the same members', () => {
    const m = v['membership'] as Row;
    const signers = (m['signers'] as Row[]).map((x) => ({
      user: hex(x['user']),
      id: identityOf(x['identity']),
    }));
    const records = (m['records'] as string[]).map((r) => must(decodeRecord(hex(r))));
    let prev: ChangeRecord | undefined;
    for (const [i, r] of records.entries()) {
      const who = signers.find((x) => toHex(x.user) === toHex(r.signer));
      if (!who) throw new Error('a known signer');
      const again = must(signChange(who.id.sigSeed, who.id.idpub, r.signer, r.groupId, prev, r.action));
      expect(toHex(recordBytes(again)), `record ${i}`).toBe((m['records'] as string[])[i]);
      expect(toHex(recordHash(again))).toBe((m['hashes'] as string[])[i]);
      prev = again;
    }
    const got = must(replayChain(records, () => true));
    const final = m['final'] as Row;
    expect(got.name).toBe(final['name']);
    const members = [...got.members.entries()]
      .map(([user, x]) => ({ role: x.role, user }))
      .sort((p, q) => p.user.localeCompare(q.user));
    expect(members).toEqual(final['members']);
  });

  it('the sealed provisioning message and its link code', () => {
    const p = v['provisioning'] as Row;
    const deviceSecret = hex(p['device_secret']);
    const code = must(linkCode(p['address'] as string, x25519Public(deviceSecret)));
    expect(linkCodeText(code)).toBe(p['code']);
    expect(toHex(must(parseLinkCode(p['code'] as string)).devicePublic)).toBe(toHex(code.devicePublic));
    const id = identityOf(p['identity']);
    const drawn = hex(p['seal_drawn']);
    const sealed = must(
      sealProvision(
        code,
        {
          ikSecret: id.ikPrivate,
          sigSeed: id.sigSeed,
          userId: hex(p['user_id']),
          username: p['username'] as string,
          linkToken: p['link_token'] as string,
        },
        drawn.slice(0, 32),
        drawn.slice(32, 56),
      ),
    );
    expect(toHex(sealed)).toBe(p['sealed']);
    const opened = must(openProvision(deviceSecret, p['address'] as string, hex(p['sealed'])));
    expect(opened.username).toBe('alice');
    expect(opened.linkToken).toBe('link-token-xyz');
    expect(toHex(opened.sigSeed)).toBe(toHex(id.sigSeed));
    const elsewhere = openProvision(deviceSecret, 'another-address', hex(p['sealed']));
    expect(elsewhere.ok ? 'opened' : elsewhere.error.kind).toBe('authenticationFailed');
    expect(parseLinkCode('e2ee-link:2:a:b:short').ok).toBe(false);
  });

  it('a payload of every kind, decoded and encoded again byte for byte', () => {
    for (const p of v['payloads'] as unknown as Row[]) {
      const decoded = must(decodePayload(hex(p['encoded'])));
      expect(decoded.kind).toBe(p['kind']);
      expect(toHex(must(encodePayload(decoded)))).toBe(p['encoded']);
      expect(toHex(must(padPayload(decoded)))).toBe(p['padded']);
    }
  });

  it('the attachment: sealed byte for byte, opened with every check', () => {
    const a = v['attachment'] as Row;
    const sealed = must(sealAttachment(hex(a['key']), hex(a['nonce']), hex(a['plaintext'])));
    expect(toHex(sealed.ciphertext)).toBe(a['ciphertext']);
    expect(toHex(sealed.sha256)).toBe(a['sha256']);
    const pointer = { key: hex(a['key']), nonce: hex(a['nonce']), sha256: sealed.sha256, size: sealed.size };
    expect(toHex(must(openAttachment(pointer, sealed.ciphertext)))).toBe(a['plaintext']);
    const spoiled = sealed.ciphertext.slice();
    spoiled[0] = (spoiled[0] ?? 0) ^ 1;
    const r = openAttachment(pointer, spoiled);
    expect(r.ok ? 'opened' : r.error.kind).toBe('hashMismatch');
    const bigger = openAttachment({ ...pointer, size: pointer.size + 1n }, sealed.ciphertext);
    expect(bigger.ok ? 'opened' : bigger.error.kind).toBe('sizeMismatch');
  });
});
