/**
 * Every known answer of crates/e2ee-core/tests/data/protocol-v1.json that
 * the protocol module covers so far (computed by an independent
 * implementation, and passed by the Rust core's own tests).
 */
import { describe, expect, it } from 'vitest';

import {
  associatedData,
  bindingSignature,
  checkX25519Public,
  decodeHeader,
  decryptMessage,
  dh,
  encodeHeader,
  encryptMessage,
  fingerprint,
  identityFromSecrets,
  initiatorDhs,
  kdfCk,
  kdfRk,
  messageKeys,
  pad,
  qrMatches,
  qrPayload,
  responderDhs,
  safetyNumber,
  signPrekey,
  toHex,
  unpad,
  verifyBinding,
  verifySignedPrekey,
  x25519Public,
  x3dhSecret,
  type IdentityKeyPair,
} from '../../src/protocol/index.js';
import { hex, vectors } from './vectors.js';

type Row = Record<string, unknown>;
const v = vectors('protocol-v1.json') as Record<string, Row>;
const ids = v['identities'] as Record<string, Row>;
const bob = v['bob_prekeys'] as Row;
const x3 = v['x3dh'] as Row;

function identity(name: string): IdentityKeyPair {
  const row = ids[name] as Row;
  const r = identityFromSecrets(hex(row['ik_priv']), hex(row['sig_seed']));
  if (!r.ok) throw new Error(r.error.detail);
  return r.value;
}

describe('protocol v1 known answers', () => {
  it('identities: IDPUB, binding signature, fingerprint', () => {
    for (const name of ['alice', 'bob']) {
      const row = ids[name] as Row;
      const id = identity(name);
      expect(toHex(id.idpub)).toBe(row['idpub']);
      expect(toHex(bindingSignature(id))).toBe(row['binding_signature']);
      expect(verifyBinding(id.idpub, hex(row['binding_signature'])).ok).toBe(true);
      expect(fingerprint(id.idpub)).toBe(row['fingerprint_hex']);
    }
  });

  it('a binding under another key, or a flipped bit, does not verify', () => {
    const alice = identity('alice');
    const sig = hex((ids['alice'] as Row)['binding_signature']);
    const flipped = sig.slice();
    flipped[0] = (flipped[0] ?? 0) ^ 1;
    const r = verifyBinding(alice.idpub, flipped);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error.kind).toBe('badSignature');
    expect(verifyBinding(identity('bob').idpub, sig).ok).toBe(false);
  });

  it("Bob's signed prekey and one-time prekey", () => {
    const b = identity('bob');
    expect(toHex(x25519Public(hex(bob['spk_priv'])))).toBe(bob['spk_pub']);
    expect(toHex(x25519Public(hex(bob['opk_priv'])))).toBe(bob['opk_pub']);
    const id = bob['spk_id'] as number;
    expect(toHex(signPrekey(b, id, hex(bob['spk_pub'])))).toBe(bob['spk_signature']);
    expect(verifySignedPrekey(b.idpub, id, hex(bob['spk_pub']), hex(bob['spk_signature'])).ok).toBe(true);
    expect(verifySignedPrekey(b.idpub, id + 1, hex(bob['spk_pub']), hex(bob['spk_signature'])).ok).toBe(
      false,
    );
  });

  it('X3DH: the same SK on both sides, with and without the one-time prekey', () => {
    const a = identity('alice');
    const b = identity('bob');
    expect(toHex(x25519Public(hex(x3['alice_ek_priv'])))).toBe(x3['alice_ek_pub']);
    for (const withOpk of [true, false]) {
      const ai = initiatorDhs({
        ourIkPrivate: a.ikPrivate,
        ourEkPrivate: hex(x3['alice_ek_priv']),
        theirIkPublic: b.idpub.subarray(0, 32),
        theirSpkPublic: hex(bob['spk_pub']),
        theirOpkPublic: withOpk ? hex(bob['opk_pub']) : undefined,
      });
      const bi = responderDhs({
        ourIkPrivate: b.ikPrivate,
        ourSpkPrivate: hex(bob['spk_priv']),
        ourOpkPrivate: withOpk ? hex(bob['opk_priv']) : undefined,
        theirIkPublic: a.idpub.subarray(0, 32),
        theirEkPublic: hex(x3['alice_ek_pub']),
      });
      if (!ai.ok || !bi.ok) throw new Error('dh failed');
      const expected = withOpk ? x3['sk_with_opk'] : x3['sk_without_opk'];
      expect(toHex(x3dhSecret(ai.value))).toBe(expected);
      expect(toHex(x3dhSecret(bi.value))).toBe(expected);
    }
    expect(toHex(associatedData(a.idpub, b.idpub))).toBe(x3['ad']);
  });

  it('KDF_RK and KDF_CK', () => {
    const rk = v['kdf_rk'] as Row;
    const out = kdfRk(hex(rk['rk']), hex(rk['dh_out']));
    expect(toHex(out.rootKey)).toBe(rk['new_rk']);
    expect(toHex(out.chainKey)).toBe(rk['ck']);
    const ck = v['kdf_ck'] as Row;
    const step = kdfCk(hex(ck['ck']));
    expect(toHex(step.messageKey)).toBe(ck['mk']);
    expect(toHex(step.nextChainKey)).toBe(ck['next_ck']);
  });

  it('ENCRYPT: key, nonce and body; a changed header or AD fails, typed', () => {
    const e = v['encrypt'] as Row;
    const [mk, ad, header, pt] = [hex(e['mk']), hex(e['ad']), hex(e['header']), hex(e['plaintext'])];
    const keys = messageKeys(mk, ad, header);
    expect(toHex(keys.key)).toBe(e['key']);
    expect(toHex(keys.nonce)).toBe(e['nonce']);
    expect(toHex(encryptMessage(mk, ad, header, pt))).toBe(e['body']);
    const opened = decryptMessage(mk, ad, header, hex(e['body']));
    expect(opened.ok && toHex(opened.value)).toBe(e['plaintext']);
    const other = header.slice();
    other[40] = (other[40] ?? 0) ^ 1;
    const r = decryptMessage(mk, ad, other, hex(e['body']));
    expect(r.ok ? 'opened' : r.error.kind).toBe('authenticationFailed');
    const h = decodeHeader(header);
    expect(h.ok && toHex(encodeHeader(h.value))).toBe(e['header']);
  });

  it('safety number: the same 60 digits both ways; the QR payloads match', () => {
    const s = v['safety_number'] as Row;
    const [a, ai, b, bi] = [
      hex(s['alice_idpub']),
      s['alice_user_id'] as string,
      hex(s['bob_idpub']),
      s['bob_user_id'] as string,
    ];
    const alice = safetyNumber(a, ai, b, bi);
    const bobs = safetyNumber(b, bi, a, ai);
    expect(alice.digits).toBe(s['safety_number']);
    expect(bobs.digits).toBe(s['safety_number']);
    expect(qrMatches(alice, qrPayload(bobs))).toEqual({ ok: true, value: true });
    expect(qrMatches(alice, qrPayload(alice))).toEqual({ ok: true, value: false });
  });

  it("own-v1.json's safety number (user ids as given)", () => {
    const own = vectors('own-v1.json') as Record<string, Row>;
    const oids = own['identities'] as Record<string, Row>;
    const s = own['safety_number'] as Row;
    const a = hex((oids['alice'] as Row)['idpub']);
    const b = hex((oids['bob'] as Row)['idpub']);
    const ai = s['alice_user_id'] as string;
    const bi = s['bob_user_id'] as string;
    expect(safetyNumber(a, ai, b, bi).digits).toBe(s['safety_number']);
    expect(safetyNumber(b, bi, a, ai).digits).toBe(s['safety_number']);
  });

  it('padding, and what unpadding refuses', () => {
    const p = v['padding'] as Row;
    expect(toHex(pad(hex(p['input'])))).toBe(p['padded']);
    const back = unpad(hex(p['padded']));
    expect(back.ok && toHex(back.value)).toBe(p['input']);
    for (const bad of [new Uint8Array(0), new Uint8Array(63), new Uint8Array(64), new Uint8Array(128)]) {
      const r = unpad(bad);
      expect(r.ok ? 'unpadded' : r.error.kind).toBe('badPadding');
    }
    expect(pad(new Uint8Array(63)).length).toBe(64);
    expect(pad(new Uint8Array(64)).length).toBe(128);
  });
});

describe('bad input is a typed error, never a throw', () => {
  it('non-canonical and low-order X25519 keys', () => {
    const high = new Uint8Array(32).fill(0xff);
    expect(checkX25519Public(high).ok).toBe(false);
    const r = dh(new Uint8Array(32).fill(7), new Uint8Array(32));
    expect(r.ok ? 'agreed' : r.error.kind).toBe('lowOrderPoint');
  });

  it('headers of every wrong length or version', () => {
    for (const n of [0, 1, 40, 42]) {
      const r = decodeHeader(new Uint8Array(n).fill(1));
      expect(r.ok).toBe(false);
    }
    const r = decodeHeader(new Uint8Array(41));
    expect(r.ok ? 'decoded' : r.error.kind).toBe('unknownVersion');
  });
});
