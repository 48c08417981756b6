/**
 * Sessions with a peer device: both sides start a session at once, and in
 * random interleavings (seeded) every message decrypts exactly once; the
 * PreKey phase ends on the first reply; a repeated PreKey message goes to
 * the session it started; at most 10 previous sessions are kept.
 */
import { describe, expect, it } from 'vitest';

import {
  adoptInitiated,
  decodeEnvelope,
  identityFromSecrets,
  kemFromSeed,
  MAX_PREVIOUS_SESSIONS,
  noSessions,
  peerDecrypt,
  peerEncrypt,
  pqxdhInitiate,
  pqxdhRespond,
  x25519Public,
  type IdentityKeyPair,
  type PeerSessions,
  type PreKeyData,
  type RatchetState,
  type Result,
} from '../../src/protocol/index.js';
import { must } from './vectors.js';

const rnd = (n: number) => crypto.getRandomValues(new Uint8Array(n));

interface Party {
  readonly id: IdentityKeyPair;
  readonly spk: Uint8Array;
  readonly kem: { encapsulationKey: Uint8Array; decapsulationKey: Uint8Array };
}

const party = (): Party => ({
  id: must(identityFromSecrets(rnd(32), rnd(32))),
  spk: rnd(32),
  kem: must(kemFromSeed(rnd(64))),
});

/** `from` starts a PQXDH session with `to` (no one-time prekey). */
function initiate(from: Party, to: Party): PeerSessions {
  const bundle = {
    idpub: to.id.idpub,
    signedPrekeyId: 1,
    signedPrekey: x25519Public(to.spk),
    pqPrekeyId: 1,
    pqPrekey: to.kem.encapsulationKey,
  };
  const { state, prekey } = must(pqxdhInitiate(from.id, bundle, rnd(32), rnd(32), rnd(32)));
  return adoptInitiated(noSessions, { state, peerIdpub: to.id.idpub, baseKey: prekey.baseKey, prekey });
}

/** `me` answering a PreKey message. */
const responder =
  (me: Party) =>
  (p: PreKeyData): Result<RatchetState> =>
    pqxdhRespond(me.id, p, me.spk, undefined, me.kem.decapsulationKey);

/** A small seeded generator for the delivery order. */
function seeded(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}

describe('sessions with a peer device', () => {
  it('simultaneous initiation: in 20 random interleavings every message decrypts exactly once', () => {
    for (let seed = 1; seed <= 20; seed++) {
      const random = seeded(seed);
      const [a, b] = [party(), party()];
      const s = { a: initiate(a, b), b: initiate(b, a) };
      const inbox: { to: 'a' | 'b'; bytes: Uint8Array; text: string }[] = [];
      const seen = { a: [] as string[], b: [] as string[] };
      const sent = { a: [] as string[], b: [] as string[] };
      for (let step = 0; step < 40; step++) {
        const who: 'a' | 'b' = random() < 0.5 ? 'a' : 'b';
        if (random() < 0.5 || inbox.length === 0) {
          const text = `${who}${step}`;
          const out = must(peerEncrypt(s[who], new TextEncoder().encode(text)));
          s[who] = out.sessions;
          inbox.push({ to: who === 'a' ? 'b' : 'a', bytes: out.bytes, text });
          sent[who].push(text);
        } else {
          // Deliver any waiting message: out of order.
          const i = Math.floor(random() * inbox.length);
          const [m] = inbox.splice(i, 1);
          if (!m) continue;
          const me = m.to === 'a' ? a : b;
          const got = must(peerDecrypt(s[m.to], must(decodeEnvelope(m.bytes)), rnd(32), responder(me)));
          s[m.to] = got.sessions;
          expect(new TextDecoder().decode(got.plaintext)).toBe(m.text);
          seen[m.to].push(m.text);
        }
      }
      for (const m of inbox.splice(0)) {
        const got = must(
          peerDecrypt(s[m.to], must(decodeEnvelope(m.bytes)), rnd(32), responder(m.to === 'a' ? a : b)),
        );
        s[m.to] = got.sessions;
        seen[m.to].push(new TextDecoder().decode(got.plaintext));
      }
      expect([...seen.b].sort()).toEqual([...sent.a].sort());
      expect([...seen.a].sort()).toEqual([...sent.b].sort());
    }
  });

  it('the PreKey phase ends on the first reply; a repeated PreKey message goes to its session', () => {
    const [a, b] = [party(), party()];
    let sa = initiate(a, b);
    let sb = noSessions;
    const first = must(peerEncrypt(sa, Uint8Array.of(1)));
    const second = must(peerEncrypt(first.sessions, Uint8Array.of(2)));
    sa = second.sessions;
    expect(first.bytes[0]).toBe(0x04);
    expect(second.bytes[0]).toBe(0x04);
    const got2 = must(peerDecrypt(sb, must(decodeEnvelope(second.bytes)), rnd(32), responder(b)));
    expect(got2.newSession).toBe(true);
    sb = got2.sessions;
    const got1 = must(peerDecrypt(sb, must(decodeEnvelope(first.bytes)), rnd(32), responder(b)));
    expect(got1.newSession).toBe(false);
    expect(Array.from(got1.plaintext)).toEqual([1]);
    sb = got1.sessions;
    const reply = must(peerEncrypt(sb, Uint8Array.of(3)));
    expect(reply.bytes[0]).toBe(0x01);
    sa = must(peerDecrypt(sa, must(decodeEnvelope(reply.bytes)), rnd(32), responder(a))).sessions;
    expect(must(peerEncrypt(sa, Uint8Array.of(4))).bytes[0]).toBe(0x01);
  });

  it('at most 10 previous sessions; a failure leaves the sessions as they were', () => {
    const [a, b] = [party(), party()];
    let sb = noSessions;
    for (let i = 0; i < 13; i++) {
      const out = must(peerEncrypt(initiate(a, b), Uint8Array.of(i)));
      sb = must(peerDecrypt(sb, must(decodeEnvelope(out.bytes)), rnd(32), responder(b))).sessions;
    }
    expect(sb.previous.length).toBe(MAX_PREVIOUS_SESSIONS);
    const out = must(peerEncrypt(initiate(a, b), Uint8Array.of(9)));
    const spoiled = out.bytes.slice();
    spoiled[spoiled.length - 1] = (spoiled[spoiled.length - 1] ?? 0) ^ 1;
    const before = sb;
    const r = peerDecrypt(sb, must(decodeEnvelope(spoiled)), rnd(32), responder(b));
    expect(r.ok).toBe(false);
    expect(sb).toBe(before);
  });
});
