/**
 * The ratchet's message header and its ENCRYPT / DECRYPT (docs/PROTOCOL.md
 * section 3): keys from HKDF over the message key, bound to `AD` and the
 * header; the body is NaCl's secretbox layout, `tag (16) || ciphertext`.
 */
import { xsalsa20poly1305 } from '@noble/ciphers/salsa.js';
import { hkdf } from '@noble/hashes/hkdf.js';
import { sha256 } from '@noble/hashes/sha2.js';

import { concat, u32be, utf8 } from './bytes.js';
import { fail, ok, type Result } from './errors.js';

export const MESSAGE_KEYS_INFO = utf8('E2EEChat MessageKeys v1');
export const HEADER_LEN = 41;
export const HEADER_VERSION = 1;
const TAG_LEN = 16;

/** `version (u8 = 1) || dh_pub (32) || pn (u32) || n (u32)`. */
export interface Header {
  readonly dhPublic: Uint8Array;
  readonly previousChainLength: number;
  readonly index: number;
}

export function encodeHeader(h: Header): Uint8Array {
  return concat(Uint8Array.of(HEADER_VERSION), h.dhPublic, u32be(h.previousChainLength), u32be(h.index));
}

export function decodeHeader(bytes: Uint8Array): Result<Header> {
  if (bytes.length < HEADER_LEN) return fail('truncated', 'a header is 41 bytes');
  if (bytes.length > HEADER_LEN) return fail('trailingBytes', 'a header is 41 bytes');
  if (bytes[0] !== HEADER_VERSION) return fail('unknownVersion', `header version ${bytes[0] ?? 0}`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  return ok({
    dhPublic: bytes.slice(1, 33),
    previousChainLength: view.getUint32(33, false),
    index: view.getUint32(37, false),
  });
}

/** The key and nonce a message key gives for this `AD` and header. */
export function messageKeys(
  mk: Uint8Array,
  ad: Uint8Array,
  header: Uint8Array,
): { key: Uint8Array; nonce: Uint8Array } {
  const info = concat(MESSAGE_KEYS_INFO, sha256(concat(ad, header)));
  const okm = hkdf(sha256, mk, new Uint8Array(32), info, 56);
  return { key: okm.slice(0, 32), nonce: okm.slice(32, 56) };
}

/** Seals with XSalsa20-Poly1305: `tag || ciphertext`. */
export function seal(key: Uint8Array, nonce: Uint8Array, plaintext: Uint8Array): Uint8Array {
  return xsalsa20poly1305(key, nonce).encrypt(plaintext);
}

/** Opens `tag || ciphertext`; a typed error when it does not authenticate. */
export function open(key: Uint8Array, nonce: Uint8Array, body: Uint8Array): Result<Uint8Array> {
  if (body.length < TAG_LEN) return fail('truncated', 'a body is at least its 16-byte tag');
  try {
    return ok(xsalsa20poly1305(key, nonce).decrypt(body));
  } catch {
    return fail('authenticationFailed', 'the message does not authenticate');
  }
}

export function encryptMessage(
  mk: Uint8Array,
  ad: Uint8Array,
  header: Uint8Array,
  plaintext: Uint8Array,
): Uint8Array {
  const { key, nonce } = messageKeys(mk, ad, header);
  return seal(key, nonce, plaintext);
}

export function decryptMessage(
  mk: Uint8Array,
  ad: Uint8Array,
  header: Uint8Array,
  body: Uint8Array,
): Result<Uint8Array> {
  const { key, nonce } = messageKeys(mk, ad, header);
  return open(key, nonce, body);
}
