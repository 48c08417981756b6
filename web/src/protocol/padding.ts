/**
 * Payload padding (docs/PROTOCOL.md section 6): append `0x80`, then zero
 * bytes up to the next multiple of 64 (1 to 64 bytes of padding).
 */
import { fail, ok, type Result } from './errors.js';

export const PAD_BLOCK = 64;

export function pad(payload: Uint8Array): Uint8Array {
  const len = (Math.floor(payload.length / PAD_BLOCK) + 1) * PAD_BLOCK;
  const out = new Uint8Array(len);
  out.set(payload);
  out[payload.length] = 0x80;
  return out;
}

/** Refuses a length that is not a multiple of 64, a last non-zero byte other than `0x80`, or over 64 bytes of padding. */
export function unpad(padded: Uint8Array): Result<Uint8Array> {
  if (padded.length === 0 || padded.length % PAD_BLOCK !== 0) {
    return fail('badPadding', 'a padded payload is a multiple of 64 bytes');
  }
  let i = padded.length - 1;
  while (i >= 0 && padded[i] === 0) i--;
  if (i < 0 || padded[i] !== 0x80) return fail('badPadding', 'no 0x80 ends the payload');
  if (padded.length - i > PAD_BLOCK) return fail('badPadding', 'over 64 bytes of padding');
  return ok(padded.slice(0, i));
}
