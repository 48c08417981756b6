/**
 * PQXDH as one step per role (docs/PROTOCOL.md section 2a): the initiator
 * turns a bundle whose signatures it has checked, and the randomness it
 * drew (`EK_A`, the KEM message `m`, its first ratchet secret, in that
 * order), into its first ratchet state and the PreKey data its messages
 * carry; the responder turns a PreKey message and its own secrets into its
 * first state.
 */
import type { PreKeyData } from './envelope.js';
import { fail, type Result } from './errors.js';
import type { IdentityKeyPair } from './keys.js';
import { x25519Public } from './keys.js';
import { kemDecapsulate, kemEncapsulate } from './pq.js';
import { initAlice, initBob, type RatchetState } from './ratchet.js';
import { associatedData, initiatorDhs, pqxdhSecret, responderDhs } from './x3dh.js';

/** The public half of a version-2 bundle (signatures already checked). */
export interface PqxdhBundle {
  readonly idpub: Uint8Array;
  readonly signedPrekeyId: number;
  readonly signedPrekey: Uint8Array;
  readonly oneTimePrekeyId?: number | undefined;
  readonly oneTimePrekey?: Uint8Array | undefined;
  readonly pqPrekeyId: number;
  readonly pqPrekey: Uint8Array;
}

/** The initiator's first state and the PreKey data of its messages until it hears back. */
export function pqxdhInitiate(
  our: IdentityKeyPair,
  b: PqxdhBundle,
  ek: Uint8Array,
  m: Uint8Array,
  firstRatchetSecret: Uint8Array,
): Result<{ state: RatchetState; prekey: PreKeyData }> {
  const kem = kemEncapsulate(b.pqPrekey, m);
  if (!kem.ok) return kem;
  const dhs = initiatorDhs({
    ourIkPrivate: our.ikPrivate,
    ourEkPrivate: ek,
    theirIkPublic: b.idpub.subarray(0, 32),
    theirSpkPublic: b.signedPrekey,
    theirOpkPublic: b.oneTimePrekey,
  });
  if (!dhs.ok) return dhs;
  const sk = pqxdhSecret(dhs.value, kem.value.sharedSecret);
  const state = initAlice(sk, associatedData(our.idpub, b.idpub), firstRatchetSecret, b.signedPrekey);
  if (!state.ok) return state;
  return {
    ok: true,
    value: {
      state: state.value,
      prekey: {
        idpub: our.idpub,
        baseKey: x25519Public(ek),
        signedPrekeyId: b.signedPrekeyId,
        oneTimePrekeyId: b.oneTimePrekey ? b.oneTimePrekeyId : undefined,
        pq: { prekeyId: b.pqPrekeyId, ciphertext: kem.value.ciphertext },
      },
    },
  };
}

/** The responder's first state for a version-2 PreKey message, from the secrets its ids name. */
export function pqxdhRespond(
  our: IdentityKeyPair,
  p: PreKeyData,
  signedPrekeySecret: Uint8Array,
  oneTimePrekeySecret: Uint8Array | undefined,
  kemDecapsulationKey: Uint8Array,
): Result<RatchetState> {
  if (!p.pq) return fail('unknownVersion', 'a version-1 PreKey message has no KEM ciphertext');
  const ss = kemDecapsulate(kemDecapsulationKey, p.pq.ciphertext);
  if (!ss.ok) return ss;
  const dhs = responderDhs({
    ourIkPrivate: our.ikPrivate,
    ourSpkPrivate: signedPrekeySecret,
    ourOpkPrivate: oneTimePrekeySecret,
    theirIkPublic: p.idpub.subarray(0, 32),
    theirEkPublic: p.baseKey,
  });
  if (!dhs.ok) return dhs;
  return {
    ok: true,
    value: initBob(pqxdhSecret(dhs.value, ss.value), associatedData(p.idpub, our.idpub), signedPrekeySecret),
  };
}
