/**
 * Identity and prekeys (docs/PROTOCOL.md section 1): `IDPUB = IK.pub ||
 * SIG.pub`, the identity binding and the signed prekey signature, DH with
 * the canonical-key and contributory checks. Secrets come in as bytes: this
 * module draws no randomness of its own.
 */
import { ed25519, x25519 } from '@noble/curves/ed25519.js';

import { allZero, concat, u32be, utf8 } from './bytes.js';
import { fail, ok, type Result } from './errors.js';

export const IDENTITY_LABEL = utf8('E2EEChat identity v1');
export const SIGNED_PREKEY_LABEL = utf8('E2EEChat signed prekey v1');

/** 2^255 - 19, little-endian, for the canonical check. */
const P = (1n << 255n) - 19n;

/** An identity: the X25519 pair `IK` and the Ed25519 pair `SIG`. */
export interface IdentityKeyPair {
  readonly ikPrivate: Uint8Array;
  readonly sigSeed: Uint8Array;
  /** `IK.pub || SIG.pub`, 64 bytes. */
  readonly idpub: Uint8Array;
}

export function identityFromSecrets(ikPrivate: Uint8Array, sigSeed: Uint8Array): Result<IdentityKeyPair> {
  if (ikPrivate.length !== 32 || sigSeed.length !== 32) {
    return fail('invalidField', 'an identity secret is 32 bytes');
  }
  const idpub = concat(x25519.getPublicKey(ikPrivate), ed25519.getPublicKey(sigSeed));
  return ok({ ikPrivate, sigSeed, idpub });
}

/** `SIG` over `"E2EEChat identity v1" || IK.pub`. */
export function bindingSignature(id: IdentityKeyPair): Uint8Array {
  return ed25519.sign(concat(IDENTITY_LABEL, id.idpub.subarray(0, 32)), id.sigSeed);
}

/** `SIG` over `"E2EEChat signed prekey v1" || id || SPK.pub`. */
export function signPrekey(id: IdentityKeyPair, prekeyId: number, spkPublic: Uint8Array): Uint8Array {
  return ed25519.sign(concat(SIGNED_PREKEY_LABEL, u32be(prekeyId), spkPublic), id.sigSeed);
}

/** Strict Ed25519 verification (no ZIP-215 leniency, as `verify_strict`). */
export function verifySignature(sigPublic: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
  if (sigPublic.length !== 32 || signature.length !== 64) return false;
  try {
    return ed25519.verify(signature, message, sigPublic, { zip215: false });
  } catch {
    return false;
  }
}

export function verifyBinding(idpub: Uint8Array, signature: Uint8Array): Result<void> {
  if (idpub.length !== 64) return fail('invalidIdentityKey', 'IDPUB is 64 bytes');
  const message = concat(IDENTITY_LABEL, idpub.subarray(0, 32));
  return verifySignature(idpub.subarray(32), message, signature)
    ? ok(undefined)
    : fail('badSignature', 'the identity binding does not verify');
}

export function verifySignedPrekey(
  idpub: Uint8Array,
  prekeyId: number,
  spkPublic: Uint8Array,
  signature: Uint8Array,
): Result<void> {
  const message = concat(SIGNED_PREKEY_LABEL, u32be(prekeyId), spkPublic);
  return verifySignature(idpub.subarray(32), message, signature)
    ? ok(undefined)
    : fail('badSignature', 'the signed prekey signature does not verify');
}

/** A received X25519 key: 32 bytes, high bit clear, below 2^255 - 19. */
export function checkX25519Public(key: Uint8Array): Result<Uint8Array> {
  if (key.length !== 32) return fail('invalidPublicKey', 'an X25519 key is 32 bytes');
  let n = 0n;
  for (let i = 31; i >= 0; i--) n = (n << 8n) | BigInt(key[i] ?? 0);
  if (n >= P) return fail('invalidPublicKey', 'the X25519 key is not canonical');
  return ok(key);
}

export function x25519Public(secret: Uint8Array): Uint8Array {
  return x25519.getPublicKey(secret);
}

/** X25519 with the contributory check: an all-zero output is refused. */
export function dh(secret: Uint8Array, peer: Uint8Array): Result<Uint8Array> {
  const checked = checkX25519Public(peer);
  if (!checked.ok) return checked;
  let out: Uint8Array;
  try {
    out = x25519.getSharedSecret(secret, peer);
  } catch {
    return fail('lowOrderPoint', 'the DH output is not contributory');
  }
  return allZero(out) ? fail('lowOrderPoint', 'the DH output is not contributory') : ok(out);
}
