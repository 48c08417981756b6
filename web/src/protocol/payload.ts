/**
 * The plaintext payload (docs/PROTOCOL.md sections 6 and 6a): version,
 * kind, message id, time, flags, body and the optional parts in flag order.
 * Unknown kinds decode (newer peers may add kinds); unknown flag bits,
 * bad UTF-8, short or trailing bytes are typed errors.
 */
import { concat, equalCt, u32be, u64be, utf8 } from './bytes.js';
import { fail, ok, type Result } from './errors.js';
import { pad, unpad } from './padding.js';

export const PAYLOAD_VERSION = 1;
export const FLAG_ATTACHMENT = 1;
export const FLAG_REFERENCE = 2;
export const FLAG_SYNC = 4;
export const FLAG_QUOTE = 8;
export const FLAG_EXPIRE = 16;
const FLAGS_KNOWN = FLAG_ATTACHMENT | FLAG_REFERENCE | FLAG_SYNC | FLAG_QUOTE | FLAG_EXPIRE;
export const QUOTE_EXCERPT_MAX = 200;

/** Kinds by their wire byte; any other byte is kept as a number. */
export const PayloadKind = {
  text: 1,
  image: 2,
  file: 3,
  senderKey: 4,
  reaction: 5,
  edit: 6,
  delete: 7,
  reply: 8,
  readSync: 9,
  localDelete: 10,
  timer: 11,
  contactSync: 12,
} as const;

export interface AttachmentPointer {
  readonly mediaId: string;
  readonly key: Uint8Array;
  readonly nonce: Uint8Array;
  readonly sha256: Uint8Array;
  /** The plaintext length in bytes. */
  readonly size: bigint;
  readonly mimeType: string;
  readonly fileName: string;
}

export type SyncTarget =
  | { readonly kind: 'direct'; readonly userId: string }
  | { readonly kind: 'group'; readonly groupId: Uint8Array };

export interface Quote {
  readonly sender: string;
  readonly excerpt: string;
}

export interface Payload {
  readonly messageId: Uint8Array;
  /** A {@link PayloadKind} value, or an unknown kind's byte. */
  readonly kind: number;
  readonly timestampMs: bigint;
  readonly body: Uint8Array;
  readonly attachment?: AttachmentPointer | undefined;
  readonly reference?: Uint8Array | undefined;
  readonly sync?: SyncTarget | undefined;
  readonly quote?: Quote | undefined;
  readonly expireSecs?: number | undefined;
}

function str(s: string, field: string): Result<Uint8Array> {
  const b = utf8(s);
  if (b.length > 0xffff) return fail('tooLong', field);
  const len = new Uint8Array(2);
  new DataView(len.buffer).setUint16(0, b.length, false);
  return ok(concat(len, b));
}

/** Encodes without padding. */
export function encodePayload(p: Payload): Result<Uint8Array> {
  if (p.messageId.length !== 16) return fail('invalidField', 'message_id is 16 bytes');
  let flags = 0;
  const tail: Uint8Array[] = [];
  if (p.attachment) {
    flags |= FLAG_ATTACHMENT;
    const a = p.attachment;
    const parts = [str(a.mediaId, 'media_id'), str(a.mimeType, 'mime_type'), str(a.fileName, 'file_name')];
    for (const r of parts) if (!r.ok) return r;
    const [media, mime, name] = parts.map((r) => (r.ok ? r.value : new Uint8Array(0)));
    if (a.key.length !== 32 || a.nonce.length !== 24 || a.sha256.length !== 32) {
      return fail('invalidField', 'attachment key, nonce or hash');
    }
    tail.push(concat(media ?? new Uint8Array(0), a.key, a.nonce, a.sha256, u64be(a.size)));
    tail.push(mime ?? new Uint8Array(0), name ?? new Uint8Array(0));
  }
  if (p.reference) {
    if (p.reference.length !== 16) return fail('invalidField', 'reference is 16 bytes');
    flags |= FLAG_REFERENCE;
    tail.push(p.reference);
  }
  if (p.sync) {
    flags |= FLAG_SYNC;
    if (p.sync.kind === 'direct') {
      const u = str(p.sync.userId, 'sync user_id');
      if (!u.ok) return u;
      tail.push(Uint8Array.of(1), u.value);
    } else {
      if (p.sync.groupId.length !== 16) return fail('invalidField', 'sync group id is 16 bytes');
      tail.push(Uint8Array.of(2), p.sync.groupId);
    }
  }
  if (p.quote) {
    flags |= FLAG_QUOTE;
    const excerpt = utf8(p.quote.excerpt);
    if (excerpt.length > QUOTE_EXCERPT_MAX) return fail('tooLong', 'quote excerpt');
    const s = str(p.quote.sender, 'quote sender');
    const e = str(p.quote.excerpt, 'quote excerpt');
    if (!s.ok) return s;
    if (!e.ok) return e;
    tail.push(s.value, e.value);
  }
  if (p.expireSecs !== undefined) {
    if (p.expireSecs === 0) return fail('invalidField', 'expire_secs');
    flags |= FLAG_EXPIRE;
    tail.push(u32be(p.expireSecs));
  }
  const head = concat(
    Uint8Array.of(PAYLOAD_VERSION, p.kind),
    p.messageId,
    u64be(p.timestampMs),
    Uint8Array.of(flags),
    u32be(p.body.length),
    p.body,
  );
  return ok(concat(head, ...tail));
}

class Reader {
  private at = 0;
  private readonly view: DataView;
  constructor(private readonly bytes: Uint8Array) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  }
  take(n: number): Uint8Array | undefined {
    if (n < 0 || this.at + n > this.bytes.length) return undefined;
    const out = this.bytes.slice(this.at, this.at + n);
    this.at += n;
    return out;
  }
  u8(): number | undefined {
    return this.at < this.bytes.length ? this.view.getUint8(this.at++) : undefined;
  }
  u16(): number | undefined {
    if (this.at + 2 > this.bytes.length) return undefined;
    const v = this.view.getUint16(this.at, false);
    this.at += 2;
    return v;
  }
  u32(): number | undefined {
    if (this.at + 4 > this.bytes.length) return undefined;
    const v = this.view.getUint32(this.at, false);
    this.at += 4;
    return v;
  }
  u64(): bigint | undefined {
    if (this.at + 8 > this.bytes.length) return undefined;
    const v = this.view.getBigUint64(this.at, false);
    this.at += 8;
    return v;
  }
  str(): Result<string> {
    const n = this.u16();
    const b = n === undefined ? undefined : this.take(n);
    if (!b) return fail('truncated', 'a string is cut short');
    try {
      return ok(new TextDecoder('utf-8', { fatal: true }).decode(b));
    } catch {
      return fail('invalidUtf8', 'a string is not UTF-8');
    }
  }
  done(): boolean {
    return this.at === this.bytes.length;
  }
}

const short = (): Result<never> => fail('truncated', 'the payload is cut short');

/** Decodes unpadded bytes. */
export function decodePayload(bytes: Uint8Array): Result<Payload> {
  const r = new Reader(bytes);
  const version = r.u8();
  if (version === undefined) return short();
  if (version !== PAYLOAD_VERSION) return fail('unknownVersion', `payload version ${version}`);
  const kind = r.u8();
  const messageId = r.take(16);
  const timestampMs = r.u64();
  const flags = r.u8();
  if (kind === undefined || !messageId || timestampMs === undefined || flags === undefined) return short();
  if ((flags & ~FLAGS_KNOWN) !== 0) return fail('invalidField', 'unknown flag bits');
  const bodyLen = r.u32();
  const body = bodyLen === undefined ? undefined : r.take(bodyLen);
  if (!body) return short();
  let attachment: AttachmentPointer | undefined;
  if (flags & FLAG_ATTACHMENT) {
    const mediaId = r.str();
    if (!mediaId.ok) return mediaId;
    const key = r.take(32);
    const nonce = r.take(24);
    const sha256 = r.take(32);
    const size = r.u64();
    if (!key || !nonce || !sha256 || size === undefined) return short();
    const mimeType = r.str();
    if (!mimeType.ok) return mimeType;
    const fileName = r.str();
    if (!fileName.ok) return fileName;
    attachment = {
      mediaId: mediaId.value,
      key,
      nonce,
      sha256,
      size,
      mimeType: mimeType.value,
      fileName: fileName.value,
    };
  }
  let reference: Uint8Array | undefined;
  if (flags & FLAG_REFERENCE) {
    reference = r.take(16);
    if (!reference) return short();
  }
  let sync: SyncTarget | undefined;
  if (flags & FLAG_SYNC) {
    const tag = r.u8();
    if (tag === 1) {
      const u = r.str();
      if (!u.ok) return u;
      sync = { kind: 'direct', userId: u.value };
    } else if (tag === 2) {
      const g = r.take(16);
      if (!g) return short();
      sync = { kind: 'group', groupId: g };
    } else {
      return tag === undefined ? short() : fail('invalidField', 'sync');
    }
  }
  let quote: Quote | undefined;
  if (flags & FLAG_QUOTE) {
    const sender = r.str();
    if (!sender.ok) return sender;
    const excerpt = r.str();
    if (!excerpt.ok) return excerpt;
    if (utf8(excerpt.value).length > QUOTE_EXCERPT_MAX) return fail('invalidField', 'quote excerpt');
    quote = { sender: sender.value, excerpt: excerpt.value };
  }
  let expireSecs: number | undefined;
  if (flags & FLAG_EXPIRE) {
    expireSecs = r.u32();
    if (expireSecs === undefined) return short();
    if (expireSecs === 0) return fail('invalidField', 'expire_secs');
  }
  if (!r.done()) return fail('trailingBytes', 'bytes after the last field');
  return ok({ messageId, kind, timestampMs, body, attachment, reference, sync, quote, expireSecs });
}

/** Encodes and pads: the bytes the ratchet encrypts. */
export function padPayload(p: Payload): Result<Uint8Array> {
  const e = encodePayload(p);
  return e.ok ? ok(pad(e.value)) : e;
}

/** Unpads, decodes, and checks the inner id equals the frame's. */
export function decodeChecked(padded: Uint8Array, outerId: Uint8Array): Result<Payload> {
  const u = unpad(padded);
  if (!u.ok) return u;
  const p = decodePayload(u.value);
  if (!p.ok) return p;
  return equalCt(p.value.messageId, outerId) ? p : fail('idMismatch', 'the inner id is not the frame id');
}
