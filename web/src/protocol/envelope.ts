/**
 * Envelopes (docs/PROTOCOL.md section 5): `0x01` Message and the PreKey
 * messages `0x02` (X3DH) and `0x04` (PQXDH). Decoders return typed errors.
 */
import { concat, u32be } from './bytes.js';
import { fail, ok, type Result } from './errors.js';
import { HEADER_LEN } from './message.js';
import { KEM_CIPHERTEXT_LEN } from './pq.js';

export const KIND_MESSAGE = 0x01;
export const KIND_PREKEY_V1 = 0x02;
export const KIND_SENDER_KEY = 0x03;
export const KIND_PREKEY_V2 = 0x04;
/** `opk_id` when the bundle had no one-time prekey. */
export const NO_ONE_TIME_PREKEY = 0xffffffff;
const TAG_LEN = 16;

/** `0x01 || header (41) || body`. */
export interface RatchetMessage {
  readonly header: Uint8Array;
  readonly body: Uint8Array;
}

/** The X3DH (and PQXDH) data a PreKey message carries before its message. */
export interface PreKeyData {
  readonly idpub: Uint8Array;
  readonly baseKey: Uint8Array;
  readonly signedPrekeyId: number;
  readonly oneTimePrekeyId: number | undefined;
  /** Version 2 only. */
  readonly pq?: { readonly prekeyId: number; readonly ciphertext: Uint8Array } | undefined;
}

export type Envelope =
  | { readonly kind: 'message'; readonly message: RatchetMessage }
  | { readonly kind: 'prekey'; readonly prekey: PreKeyData; readonly message: RatchetMessage };

export function encodeMessage(m: RatchetMessage): Uint8Array {
  return concat(Uint8Array.of(KIND_MESSAGE), m.header, m.body);
}

export function encodePreKey(p: PreKeyData, m: RatchetMessage): Uint8Array {
  const opk = u32be(p.oneTimePrekeyId ?? NO_ONE_TIME_PREKEY);
  const head = concat(p.idpub, p.baseKey, u32be(p.signedPrekeyId), opk);
  if (p.pq) {
    return concat(
      Uint8Array.of(KIND_PREKEY_V2),
      head,
      u32be(p.pq.prekeyId),
      p.pq.ciphertext,
      encodeMessage(m),
    );
  }
  return concat(Uint8Array.of(KIND_PREKEY_V1), head, encodeMessage(m));
}

class Reader {
  private at = 0;
  constructor(private readonly bytes: Uint8Array) {}
  take(n: number): Uint8Array | undefined {
    if (this.at + n > this.bytes.length) return undefined;
    const out = this.bytes.slice(this.at, this.at + n);
    this.at += n;
    return out;
  }
  u32(): number | undefined {
    const b = this.take(4);
    return b ? new DataView(b.buffer).getUint32(0, false) : undefined;
  }
  rest(): Uint8Array {
    const out = this.bytes.slice(this.at);
    this.at = this.bytes.length;
    return out;
  }
}

function decodeMessageBytes(bytes: Uint8Array): Result<RatchetMessage> {
  if (bytes[0] !== KIND_MESSAGE) return fail('unknownKind', `inner kind ${bytes[0] ?? 'none'}`);
  if (bytes.length < 1 + HEADER_LEN + TAG_LEN) return fail('truncated', 'a message is at least 58 bytes');
  return ok({ header: bytes.slice(1, 1 + HEADER_LEN), body: bytes.slice(1 + HEADER_LEN) });
}

/** Decodes a 1:1 envelope (`0x01`, `0x02`, `0x04`). */
export function decodeEnvelope(bytes: Uint8Array): Result<Envelope> {
  const kind = bytes[0];
  if (kind === undefined) return fail('truncated', 'an empty envelope');
  if (kind === KIND_MESSAGE) {
    const m = decodeMessageBytes(bytes);
    return m.ok ? ok({ kind: 'message', message: m.value }) : m;
  }
  if (kind !== KIND_PREKEY_V1 && kind !== KIND_PREKEY_V2) return fail('unknownKind', `envelope kind ${kind}`);
  const r = new Reader(bytes.subarray(1));
  const idpub = r.take(64);
  const baseKey = r.take(32);
  const spk = r.u32();
  const opk = r.u32();
  if (!idpub || !baseKey || spk === undefined || opk === undefined) {
    return fail('truncated', 'a PreKey message is cut short');
  }
  let pq: PreKeyData['pq'];
  if (kind === KIND_PREKEY_V2) {
    const prekeyId = r.u32();
    const ciphertext = r.take(KEM_CIPHERTEXT_LEN);
    if (prekeyId === undefined || !ciphertext) return fail('truncated', 'a PreKey message is cut short');
    pq = { prekeyId, ciphertext };
  }
  const m = decodeMessageBytes(r.rest());
  if (!m.ok) return m;
  const prekey: PreKeyData = {
    idpub,
    baseKey,
    signedPrekeyId: spk,
    oneTimePrekeyId: opk === NO_ONE_TIME_PREKEY ? undefined : opk,
    pq,
  };
  return ok({ kind: 'prekey', prekey, message: m.value });
}
