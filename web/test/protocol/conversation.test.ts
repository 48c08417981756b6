/**
 * protocol-v1.json's scripted conversation, replayed byte for byte: X3DH
 * with the one-time prekey, PreKey messages until Alice hears back, two
 * messages delivered out of order, and three DH ratchet turns.
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
  responderDhs,
  toHex,
  x25519Public,
  x3dhSecret,
  type PreKeyData,
  type RatchetState,
} from '../../src/protocol/index.js';
import { hex, must, vectors } from './vectors.js';

type Row = Record<string, unknown>;

function replay(file: string): void {
  const v = vectors(file) as Record<string, Row>;
  const ids = v['identities'] as Record<string, Row>;
  const idOf = (n: string) =>
    must(identityFromSecrets(hex((ids[n] as Row)['ik_priv']), hex((ids[n] as Row)['sig_seed'])));
  const alice = idOf('alice');
  const bob = idOf('bob');
  const pre = v['bob_prekeys'] as Row;
  const x3 = v['x3dh'] as Row;
  const conv = v['conversation'] as Row;
  const ad = associatedData(alice.idpub, bob.idpub);
  const ek = hex(x3['alice_ek_priv']);
  const sk = x3dhSecret(
    must(
      initiatorDhs({
        ourIkPrivate: alice.ikPrivate,
        ourEkPrivate: ek,
        theirIkPublic: bob.idpub.subarray(0, 32),
        theirSpkPublic: hex(pre['spk_pub']),
        theirOpkPublic: pre['opk_id'] == null ? undefined : x25519Public(hex(pre['opk_priv'])),
      }),
    ),
  );
  let a: RatchetState = must(initAlice(sk, ad, hex(conv['alice_first_ratchet_priv']), hex(pre['spk_pub'])));
  let aliceHeard = false;
  const prekey: PreKeyData = {
    idpub: alice.idpub,
    baseKey: x25519Public(ek),
    signedPrekeyId: pre['spk_id'] as number,
    oneTimePrekeyId: pre['opk_id'] == null ? undefined : (pre['opk_id'] as number),
  };
  let b: RatchetState | undefined;
  const unused = new Uint8Array(32).fill(0x5a);
  const steps = conv['steps'] as Row[];
  for (const [i, step] of steps.entries()) {
    const op = step['op'] as string;
    const pt = hex(step['plaintext']);
    if (op === 'alice_encrypt' || op === 'bob_encrypt') {
      const out = must(encrypt(op === 'alice_encrypt' ? a : (b as RatchetState), pt));
      const bytes =
        op === 'alice_encrypt' && !aliceHeard
          ? encodePreKey(prekey, out.message)
          : encodeMessage(out.message);
      expect(toHex(bytes), `step ${i}`).toBe(step['envelope']);
      if (op === 'alice_encrypt') a = out.state;
      else b = out.state;
      continue;
    }
    const env = must(decodeEnvelope(hex(step['envelope'])));
    const next = step['new_ratchet_priv'] === undefined ? unused : hex(step['new_ratchet_priv']);
    if (op === 'bob_decrypt') {
      if (!b) {
        expect(env.kind).toBe('prekey');
        if (env.kind !== 'prekey') return;
        const bsk = x3dhSecret(
          must(
            responderDhs({
              ourIkPrivate: bob.ikPrivate,
              ourSpkPrivate: hex(pre['spk_priv']),
              ourOpkPrivate: pre['opk_id'] == null ? undefined : hex(pre['opk_priv']),
              theirIkPublic: env.prekey.idpub.subarray(0, 32),
              theirEkPublic: env.prekey.baseKey,
            }),
          ),
        );
        b = initBob(bsk, associatedData(env.prekey.idpub, bob.idpub), hex(pre['spk_priv']));
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
}

describe('the scripted conversations', () => {
  it("protocol-v1.json's, byte for byte (the one-time prekey, out of order, three turns)", () => {
    replay('protocol-v1.json');
  });

  it("own-v1.json's, byte for byte (no one-time prekey, out of order across turns)", () => {
    replay('own-v1.json');
  });

  it('a tampered message, a replay and a header under another key leave the state as it was', () => {
    const ad = new Uint8Array(128).fill(3);
    const sk = new Uint8Array(32).fill(9);
    const bobSpk = new Uint8Array(32).fill(0x21);
    const a = must(initAlice(sk, ad, new Uint8Array(32).fill(0x11), x25519Public(bobSpk)));
    const b0 = initBob(sk, ad, bobSpk);
    const first = must(encrypt(a, new Uint8Array([1, 2, 3])));
    const next = new Uint8Array(32).fill(0x33);
    // Tampered body: a typed error, and b0 still opens the real one.
    const bad = { ...first.message, body: first.message.body.map((x, i) => (i === 0 ? x ^ 1 : x)) };
    const r = decrypt(b0, bad, next);
    expect(r.ok ? 'opened' : r.error.kind).toBe('authenticationFailed');
    const good = must(decrypt(b0, first.message, next));
    expect(Array.from(good.plaintext)).toEqual([1, 2, 3]);
    // Replay on the new state: refused, typed.
    const again = decrypt(good.state, first.message, next);
    expect(again.ok).toBe(false);
    // A gap over MAX_SKIP is refused, typed.
    const far = { ...first.message, header: first.message.header.slice() };
    new DataView(far.header.buffer).setUint32(37, 5000, false);
    expect(decrypt(good.state, far, next).ok).toBe(false);
  });
});
