/**
 * Attachments (docs/PROTOCOL.md section 8): a fresh key and nonce per file
 * (passed in), XSalsa20-Poly1305 in the secretbox layout, SHA-256 of the
 * ciphertext; opening checks the hash first, then decrypts, then the size.
 */
import { sha256 } from '@noble/hashes/sha2.js';

import { equalCt } from './bytes.js';
import { fail, ok, type Result } from './errors.js';
import { open, seal } from './message.js';

export interface SealedAttachment {
  readonly ciphertext: Uint8Array;
  readonly sha256: Uint8Array;
  readonly size: bigint;
}

export function sealAttachment(
  key: Uint8Array,
  nonce: Uint8Array,
  plaintext: Uint8Array,
): Result<SealedAttachment> {
  if (key.length !== 32 || nonce.length !== 24)
    return fail('invalidField', 'a file key is 32 bytes, its nonce 24');
  const ciphertext = seal(key, nonce, plaintext);
  return ok({ ciphertext, sha256: sha256(ciphertext), size: BigInt(plaintext.length) });
}

export function openAttachment(
  pointer: {
    readonly key: Uint8Array;
    readonly nonce: Uint8Array;
    readonly sha256: Uint8Array;
    readonly size: bigint;
  },
  ciphertext: Uint8Array,
): Result<Uint8Array> {
  if (!equalCt(sha256(ciphertext), pointer.sha256))
    return fail('hashMismatch', 'the file is not the one sent');
  if (pointer.key.length !== 32 || pointer.nonce.length !== 24)
    return fail('invalidField', 'a file key or nonce');
  const plain = open(pointer.key, pointer.nonce, ciphertext);
  if (!plain.ok) return plain;
  return BigInt(plain.value.length) === pointer.size
    ? plain
    : fail('sizeMismatch', 'the file is not its stated size');
}
