/**
 * ML-KEM-1024 (FIPS 203) for PQXDH (docs/PROTOCOL.md sections 1 and 2a),
 * on @noble/post-quantum: keys from their 64-byte seed `d || z`,
 * encapsulation with a given message `m` (randomness passed in), the PQ
 * prekey signature. Bad keys and ciphertexts are typed errors.
 */
import { ed25519 } from '@noble/curves/ed25519.js';
import { ml_kem1024 } from '@noble/post-quantum/ml-kem.js';

import { concat, u32be, utf8 } from './bytes.js';
import { fail, ok, type Result } from './errors.js';
import { verifySignature } from './keys.js';

export const PQ_PREKEY_LABEL = utf8('E2EEChat PQ prekey v2');
export const KEM_PUBLIC_LEN = 1568;
export const KEM_CIPHERTEXT_LEN = 1568;
export const KEM_SEED_LEN = 64;

export interface KemKeyPair {
  readonly encapsulationKey: Uint8Array;
  readonly decapsulationKey: Uint8Array;
}

/** `ML-KEM.KeyGen_internal(d, z)` from the 64-byte seed. */
export function kemFromSeed(seed: Uint8Array): Result<KemKeyPair> {
  if (seed.length !== KEM_SEED_LEN) return fail('invalidField', 'an ML-KEM seed is 64 bytes');
  const { publicKey, secretKey } = ml_kem1024.keygen(seed.slice());
  return ok({ encapsulationKey: publicKey, decapsulationKey: secretKey });
}

/** `Encaps_internal(ek, m)`: the 1568-byte `CT` and the 32-byte `SS`. A key failing FIPS 203's checks is `invalidKemKey`. */
export function kemEncapsulate(
  encapsulationKey: Uint8Array,
  m: Uint8Array,
): Result<{ ciphertext: Uint8Array; sharedSecret: Uint8Array }> {
  if (encapsulationKey.length !== KEM_PUBLIC_LEN)
    return fail('invalidKemKey', 'an ML-KEM-1024 key is 1568 bytes');
  if (m.length !== 32) return fail('invalidField', 'the encapsulation message is 32 bytes');
  try {
    const { cipherText, sharedSecret } = ml_kem1024.encapsulate(encapsulationKey, m.slice());
    return ok({ ciphertext: cipherText, sharedSecret });
  } catch {
    return fail('invalidKemKey', 'the ML-KEM-1024 key fails the modulus check');
  }
}

/** `Decaps(dk, CT)`; a wrong `CT` gives another `SS` (implicit rejection), not an error. */
export function kemDecapsulate(decapsulationKey: Uint8Array, ciphertext: Uint8Array): Result<Uint8Array> {
  if (ciphertext.length !== KEM_CIPHERTEXT_LEN) return fail('invalidField', 'a KEM ciphertext is 1568 bytes');
  try {
    // noble wipes the secret key it is given: it gets a copy.
    return ok(ml_kem1024.decapsulate(ciphertext, decapsulationKey.slice()));
  } catch {
    return fail('invalidKemKey', 'the decapsulation key does not decode');
  }
}

/** `SIG` over `"E2EEChat PQ prekey v2" || id || ek`. */
export function verifyPqPrekey(
  idpub: Uint8Array,
  prekeyId: number,
  encapsulationKey: Uint8Array,
  signature: Uint8Array,
): Result<void> {
  const message = concat(PQ_PREKEY_LABEL, u32be(prekeyId), encapsulationKey);
  return verifySignature(idpub.subarray(32), message, signature)
    ? ok(undefined)
    : fail('badSignature', 'the PQ prekey signature does not verify');
}

/** `SIG` over `"E2EEChat PQ prekey v2" || id || ek` (Ed25519 is deterministic). */
export function signPqPrekey(
  sigSeed: Uint8Array,
  prekeyId: number,
  encapsulationKey: Uint8Array,
): Uint8Array {
  return ed25519.sign(concat(PQ_PREKEY_LABEL, u32be(prekeyId), encapsulationKey), sigSeed);
}
