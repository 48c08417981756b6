/** The key derivations of docs/PROTOCOL.md sections 2 and 3. */
import { hkdf } from '@noble/hashes/hkdf.js';
import { hmac } from '@noble/hashes/hmac.js';
import { sha256 } from '@noble/hashes/sha2.js';

import { concat, utf8 } from './bytes.js';

export const X3DH_INFO = utf8('E2EEChat X3DH v1');
export const PQXDH_INFO = utf8('E2EEChat PQXDH X25519 ML-KEM-1024 v2');
export const RATCHET_INFO = utf8('E2EEChat Ratchet v1');

const ZERO32 = new Uint8Array(32);
const FF32 = new Uint8Array(32).fill(0xff);

/** `SK = HKDF(0x00*32, 0xFF*32 || DH1 || DH2 || DH3 [|| DH4] [|| SS], info, 32)`. */
export function sharedSecret(info: Uint8Array, parts: readonly Uint8Array[]): Uint8Array {
  return hkdf(sha256, concat(FF32, ...parts), ZERO32, info, 32);
}

/** `KDF_RK`: the new root key and chain key. */
export function kdfRk(rk: Uint8Array, dhOut: Uint8Array): { rootKey: Uint8Array; chainKey: Uint8Array } {
  const okm = hkdf(sha256, dhOut, rk, RATCHET_INFO, 64);
  return { rootKey: okm.slice(0, 32), chainKey: okm.slice(32, 64) };
}

/** `KDF_CK`: the message key and the next chain key. */
export function kdfCk(ck: Uint8Array): { messageKey: Uint8Array; nextChainKey: Uint8Array } {
  return {
    messageKey: hmac(sha256, ck, Uint8Array.of(1)),
    nextChainKey: hmac(sha256, ck, Uint8Array.of(2)),
  };
}
