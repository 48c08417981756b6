/**
 * Typed errors of the protocol layer, as e2ee-core's `DecodeError` and
 * `CryptoError`: every decoder and every check returns one of these in a
 * {@link Result}; nothing in this module throws on bad input.
 */

/** What went wrong, as a closed set of kinds (the Rust enums' variants). */
export type ProtocolErrorKind =
  | 'truncated'
  | 'trailingBytes'
  | 'invalidField'
  | 'unknownVersion'
  | 'unknownKind'
  | 'invalidPublicKey'
  | 'invalidIdentityKey'
  | 'invalidKemKey'
  | 'badSignature'
  | 'badPadding'
  | 'invalidUtf8'
  | 'tooLong'
  | 'idMismatch'
  | 'hashMismatch'
  | 'sizeMismatch'
  | 'notAllowed'
  | 'brokenChain'
  | 'lowOrderPoint'
  | 'authenticationFailed';

/** A typed protocol error: `kind` for code, `detail` for people. */
export interface ProtocolError {
  readonly kind: ProtocolErrorKind;
  readonly detail: string;
}

/** Success with a value, or a typed error. */
export type Result<T> =
  { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: ProtocolError };

export function ok<T>(value: T): Result<T> {
  return { ok: true, value };
}

export function fail<T>(kind: ProtocolErrorKind, detail: string): Result<T> {
  return { ok: false, error: { kind, detail } };
}
