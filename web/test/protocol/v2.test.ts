/**
 * Version 2 (PQXDH) against crates/e2ee-core/tests/data: ML-KEM-1024 with
 * the IETF example key and NIST's ACVP vector, then own-v2.json's exchange
 * byte for byte (bundle checks, `CT`, `SS`, `SK`, the first messages both
 * ways), and own-v1.json's conversation in protocol-v1's schema.
 */
import { describe, expect, it } from 'vitest';

import {
  associatedData,
  decodeEnvelope,
  decrypt,
  encodeMessage,
  encodePreKey,
  encrypt,
  identityFromSecrets,
  initAlice,
  initBob,
  initiatorDhs,
  kemDecapsulate,
  kemEncapsulate,
  kemFromSeed,
  PQXDH_INFO,
  pqxdhSecret,
  responderDhs,
  toHex,
  verifyPqPrekey,
  verifySignedPrekey,
  x25519Public,
  type IdentityKeyPair,
  type RatchetState,
} from '../../src/protocol/index.js';
import { hex, must, vectors } from './vectors.js';

type Row = Record<string, unknown>;

describe('ML-KEM-1024 known answers', () => {
  it('the IETF example seed gives its published key', () => {
    const v = vectors('mlkem1024-ietf-example.json') as Row;
    expect(toHex(must(kemFromSeed(hex(v['seed']))).encapsulationKey)).toBe(v['ek']);
  });

  it("NIST's ACVP vector: ciphertext and secret", () => {
    const v = vectors('mlkem1024-acvp-encap.json') as Row;
    const out = must(kemEncapsulate(hex(v['ek']), hex(v['m'])));
    expect(toHex(out.ciphertext)).toBe(v['c']);
    expect(toHex(out.sharedSecret)).toBe(v['k']);
  });

  it('a key failing the modulus check is a typed error; a wrong ciphertext another secret', () => {
    const bad = new Uint8Array(1568).fill(0xff);
    const r = kemEncapsulate(bad, new Uint8Array(32));
    expect(r.ok ? 'encapsulated' : r.error.kind).toBe('invalidKemKey');
    const kp = must(kemFromSeed(new Uint8Array(64).fill(1)));
    const { ciphertext, sharedSecret } = must(
      kemEncapsulate(kp.encapsulationKey, new Uint8Array(32).fill(2)),
    );
    expect(toHex(must(kemDecapsulate(kp.decapsulationKey, ciphertext)))).toBe(toHex(sharedSecret));
    // The key is not wiped by decapsulating (noble wipes what it is given).
    expect(toHex(must(kemDecapsulate(kp.decapsulationKey, ciphertext)))).toBe(toHex(sharedSecret));
    const other = ciphertext.slice();
    other[0] = (other[0] ?? 0) ^ 1;
    expect(toHex(must(kemDecapsulate(kp.decapsulationKey, other)))).not.toBe(toHex(sharedSecret));
  });
});

function identities(v: Record<string, Row>): { alice: IdentityKeyPair; bob: IdentityKeyPair } {
  const ids = v['identities'] as Record<string, Row>;
  const of = (n: string) =>
    must(identityFromSecrets(hex((ids[n] as Row)['ik_priv']), hex((ids[n] as Row)['sig_seed'])));
  const alice = of('alice');
  const bob = of('bob');
  expect(toHex(alice.idpub)).toBe((ids['alice'] as Row)['idpub']);
  expect(toHex(bob.idpub)).toBe((ids['bob'] as Row)['idpub']);
  return { alice, bob };
}

describe('own-v2.json: one PQXDH exchange', () => {
  const v = vectors('own-v2.json') as Record<string, Row>;
  const pre = v['bob_prekeys'] as Row;
  const pq = v['pqxdh'] as Row;

  it('the bundle, CT, SS and SK, then the first messages both ways', () => {
    const { alice, bob } = identities(v);
    expect(toHex(PQXDH_INFO)).toBe(pq['pqxdh_info']);
    must(
      verifySignedPrekey(bob.idpub, pre['spk_id'] as number, hex(pre['spk_pub']), hex(pre['spk_signature'])),
    );
    const kp = must(kemFromSeed(hex(pre['pqpk_seed'])));
    expect(toHex(kp.encapsulationKey)).toBe(pre['pqpk_ek']);
    must(
      verifyPqPrekey(bob.idpub, pre['pqpk_id'] as number, kp.encapsulationKey, hex(pre['pqpk_signature'])),
    );
    expect(
      verifyPqPrekey(
        bob.idpub,
        1 + (pre['pqpk_id'] as number),
        kp.encapsulationKey,
        hex(pre['pqpk_signature']),
      ).ok,
    ).toBe(false);

    const ek = hex(pq['alice_ek_priv']);
    const kem = must(kemEncapsulate(kp.encapsulationKey, hex(pq['kem_m'])));
    expect(toHex(kem.ciphertext)).toBe(pq['ct']);
    expect(toHex(kem.sharedSecret)).toBe(pq['ss']);
    const dhs = must(
      initiatorDhs({
        ourIkPrivate: alice.ikPrivate,
        ourEkPrivate: ek,
        theirIkPublic: bob.idpub.subarray(0, 32),
        theirSpkPublic: hex(pre['spk_pub']),
        theirOpkPublic: hex(pre['opk_pub']),
      }),
    );
    const sk = pqxdhSecret(dhs, kem.sharedSecret);
    expect(toHex(sk)).toBe(pq['sk']);

    const ad = associatedData(alice.idpub, bob.idpub);
    let a: RatchetState = must(initAlice(sk, ad, hex(pq['alice_first_ratchet_priv']), hex(pre['spk_pub'])));
    let b: RatchetState | undefined;
    let sent: Uint8Array = new Uint8Array(0);
    for (const step of v['steps'] as unknown as Row[]) {
      const op = step['op'] as string;
      if (op === 'alice_encrypt') {
        const out = must(encrypt(a, hex(step['plaintext'])));
        a = out.state;
        sent = encodePreKey(
          {
            idpub: alice.idpub,
            baseKey: x25519Public(ek),
            signedPrekeyId: pre['spk_id'] as number,
            oneTimePrekeyId: pre['opk_id'] as number,
            pq: { prekeyId: pre['pqpk_id'] as number, ciphertext: kem.ciphertext },
          },
          out.message,
        );
        expect(toHex(sent)).toBe(step['envelope']);
      } else if (op === 'bob_encrypt') {
        const out = must(encrypt(b as RatchetState, hex(step['plaintext'])));
        b = out.state;
        sent = encodeMessage(out.message);
        expect(toHex(sent)).toBe(step['envelope']);
      } else {
        const env = must(decodeEnvelope(sent));
        const next = hex(step['new_ratchet_priv']);
        if (op === 'bob_decrypt') {
          if (env.kind !== 'prekey' || !env.prekey.pq) throw new Error('a version-2 PreKey message');
          const ss = must(kemDecapsulate(kp.decapsulationKey, env.prekey.pq.ciphertext));
          const bdhs = must(
            responderDhs({
              ourIkPrivate: bob.ikPrivate,
              ourSpkPrivate: hex(pre['spk_priv']),
              ourOpkPrivate: hex(pre['opk_priv']),
              theirIkPublic: env.prekey.idpub.subarray(0, 32),
              theirEkPublic: env.prekey.baseKey,
            }),
          );
          b = initBob(
            pqxdhSecret(bdhs, ss),
            associatedData(env.prekey.idpub, bob.idpub),
            hex(pre['spk_priv']),
          );
          const out = must(decrypt(b, env.message, next));
          expect(new TextDecoder().decode(out.plaintext)).toMatch(/^a0: the first PQXDH message/);
          b = out.state;
        } else {
          const out = must(decrypt(a, env.message, next));
          expect(new TextDecoder().decode(out.plaintext)).toMatch(/^b0: the reply/);
          a = out.state;
        }
      }
    }
  });
});
