/** Fingerprints, safety numbers and the QR payload (docs/PROTOCOL.md section 7). */
import { sha256, sha512 } from '@noble/hashes/sha2.js';

import { concat, equalCt, toHex, utf8 } from './bytes.js';
import { fail, ok, type Result } from './errors.js';

const ITERATIONS = 5200;
export const QR_VERSION = 1;

/** `hex(SHA-256(IDPUB))`. */
export function fingerprint(idpub: Uint8Array): string {
  return toHex(sha256(idpub));
}

/** Per side: `h = 0x0000 || IDPUB || user_id`, then 5200 times `SHA-512(h || IDPUB)`. */
function sideHash(idpub: Uint8Array, userId: string): Uint8Array {
  let h = concat(new Uint8Array(2), idpub, utf8(userId));
  for (let i = 0; i < ITERATIONS; i++) h = sha512(concat(h, idpub));
  return h;
}

/** Six 5-byte big-endian numbers mod 100000, 5 digits each. */
function digits(h: Uint8Array): string {
  let out = '';
  for (let i = 0; i < 6; i++) {
    let n = 0n;
    for (let j = 0; j < 5; j++) n = (n << 8n) | BigInt(h[5 * i + j] ?? 0);
    out += (n % 100000n).toString().padStart(5, '0');
  }
  return out;
}

/** The 60 digits both sides see; `ours`/`theirs` for the QR payload. */
export interface SafetyNumber {
  readonly digits: string;
  readonly ours: Uint8Array;
  readonly theirs: Uint8Array;
}

export function safetyNumber(
  ourIdpub: Uint8Array,
  ourUserId: string,
  theirIdpub: Uint8Array,
  theirUserId: string,
): SafetyNumber {
  const ours = sideHash(ourIdpub, ourUserId);
  const theirs = sideHash(theirIdpub, theirUserId);
  const a = digits(ours);
  const b = digits(theirs);
  return { digits: a < b ? a + b : b + a, ours: ours.slice(0, 32), theirs: theirs.slice(0, 32) };
}

/** `version (u8 = 1) || our h[0..32] || their h[0..32]`. */
export function qrPayload(sn: SafetyNumber): Uint8Array {
  return concat(Uint8Array.of(QR_VERSION), sn.ours, sn.theirs);
}

/** Whether a scanned payload is the other side of ours (constant time). */
export function qrMatches(sn: SafetyNumber, scanned: Uint8Array): Result<boolean> {
  if (scanned.length !== 65) return fail('invalidField', 'a QR payload is 65 bytes');
  if (scanned[0] !== QR_VERSION) return fail('unknownVersion', `QR version ${scanned[0] ?? 0}`);
  const theirOurs = scanned.subarray(1, 33);
  const theirTheirs = scanned.subarray(33, 65);
  return ok(equalCt(theirOurs, sn.theirs) && equalCt(theirTheirs, sn.ours));
}
