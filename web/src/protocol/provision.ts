/**
 * Linking a device (docs/PROTOCOL.md section 11): the link code the new
 * device shows, and the sealed message the approving device sends it. The
 * ephemeral secret and the nonce are passed in (randomness from outside).
 */
import { hkdf } from '@noble/hashes/hkdf.js';
import { sha256 } from '@noble/hashes/sha2.js';

import { concat, utf8 } from './bytes.js';
import { fail, ok, type Result } from './errors.js';
import { checkX25519Public, dh, x25519Public } from './keys.js';
import { open, seal } from './message.js';

export const PROVISION_VERSION = 2;
export const PROVISION_INFO = utf8('E2EEChat provisioning v2');
export const LINK_CODE_PREFIX = 'e2ee-link:2:';
export const MAX_FIELD_BYTES = 256;

export interface LinkCode {
  readonly address: string;
  readonly devicePublic: Uint8Array;
}

/** What the approving device hands the new one. */
export interface ProvisionContents {
  readonly ikSecret: Uint8Array;
  readonly sigSeed: Uint8Array;
  readonly userId: Uint8Array;
  readonly username: string;
  readonly linkToken: string;
}

const validAddress = (a: string): boolean =>
  a.length > 0 && a.length <= MAX_FIELD_BYTES && /^[\x21-\x39\x3b-\x7e]+$/.test(a);

function base64url(b: Uint8Array): string {
  let s = '';
  for (const x of b) s += String.fromCharCode(x);
  return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

function fromBase64url(s: string): Uint8Array | undefined {
  if (!/^[A-Za-z0-9_-]*$/.test(s)) return undefined;
  try {
    const bin = atob(s.replace(/-/g, '+').replace(/_/g, '/'));
    return Uint8Array.from(bin, (c) => c.charCodeAt(0));
  } catch {
    return undefined;
  }
}

export function linkCode(address: string, devicePublic: Uint8Array): Result<LinkCode> {
  if (!validAddress(address))
    return fail('invalidField', 'a link address is 1 to 256 printable ASCII bytes without ":"');
  const key = checkX25519Public(devicePublic);
  return key.ok ? ok({ address, devicePublic }) : key;
}

/** `e2ee-link:2:<address>:<base64url key>`. */
export function linkCodeText(c: LinkCode): string {
  return `${LINK_CODE_PREFIX}${c.address}:${base64url(c.devicePublic)}`;
}

/** Parses a code (surrounding whitespace allowed). */
export function parseLinkCode(text: string): Result<LinkCode> {
  const t = text.trim();
  if (!t.startsWith(LINK_CODE_PREFIX)) return fail('invalidField', 'not an e2ee-link:2: code');
  const rest = t.slice(LINK_CODE_PREFIX.length);
  const at = rest.lastIndexOf(':');
  if (at < 0) return fail('invalidField', 'a link code has an address and a key');
  const key = fromBase64url(rest.slice(at + 1));
  if (key?.length !== 32) return fail('invalidField', 'the key of a link code is 32 bytes');
  return linkCode(rest.slice(0, at), key);
}

function field(s: string, name: string): Result<Uint8Array> {
  const b = utf8(s);
  if (b.length > MAX_FIELD_BYTES) return fail('tooLong', name);
  return ok(concat(Uint8Array.of(b.length >> 8, b.length & 0xff), b));
}

function key(shared: Uint8Array, address: string, eph: Uint8Array, device: Uint8Array): Uint8Array {
  const a = utf8(address);
  const info = concat(PROVISION_INFO, Uint8Array.of(a.length >> 8, a.length & 0xff), a, eph, device);
  return hkdf(sha256, shared, new Uint8Array(32), info, 32);
}

/** Seals `contents` to the device that showed `code`: `0x02 || eph_pub || nonce || box`. */
export function sealProvision(
  code: LinkCode,
  contents: ProvisionContents,
  ephSecret: Uint8Array,
  nonce: Uint8Array,
): Result<Uint8Array> {
  if (contents.ikSecret.length !== 32 || contents.sigSeed.length !== 32 || contents.userId.length !== 16) {
    return fail('invalidField', 'identity secrets are 32 bytes, the user id 16');
  }
  if (nonce.length !== 24) return fail('invalidField', 'a nonce is 24 bytes');
  const u = field(contents.username, 'username');
  const t = field(contents.linkToken, 'link_token');
  if (!u.ok) return u;
  if (!t.ok) return t;
  const shared = dh(ephSecret, code.devicePublic);
  if (!shared.ok) return shared;
  const eph = x25519Public(ephSecret);
  const plain = concat(
    Uint8Array.of(PROVISION_VERSION),
    contents.ikSecret,
    contents.sigSeed,
    contents.userId,
    u.value,
    t.value,
  );
  const box = seal(key(shared.value, code.address, eph, code.devicePublic), nonce, plain);
  return ok(concat(Uint8Array.of(PROVISION_VERSION), eph, nonce, box));
}

/** Opens a sealed message sent to `address` with the new device's secret. */
export function openProvision(
  deviceSecret: Uint8Array,
  address: string,
  sealed: Uint8Array,
): Result<ProvisionContents> {
  if (sealed.length < 1 + 32 + 24 + 16) return fail('truncated', 'a sealed message is cut short');
  if (sealed[0] !== PROVISION_VERSION)
    return fail('unknownVersion', `provisioning version ${sealed[0] ?? 0}`);
  const eph = sealed.slice(1, 33);
  const nonce = sealed.slice(33, 57);
  const shared = dh(deviceSecret, eph);
  if (!shared.ok) return shared;
  const plain = open(key(shared.value, address, eph, x25519Public(deviceSecret)), nonce, sealed.slice(57));
  if (!plain.ok) return plain;
  const p = plain.value;
  if (p[0] !== PROVISION_VERSION) return fail('unknownVersion', `contents version ${p[0] ?? 0}`);
  let at = 1 + 32 + 32 + 16;
  if (p.length < at) return fail('truncated', 'the contents are cut short');
  const text = (name: string): Result<string> => {
    if (at + 2 > p.length) return fail('truncated', name);
    const n = ((p[at] ?? 0) << 8) | (p[at + 1] ?? 0);
    if (n > MAX_FIELD_BYTES) return fail('invalidField', name);
    if (at + 2 + n > p.length) return fail('truncated', name);
    const b = p.slice(at + 2, at + 2 + n);
    at += 2 + n;
    try {
      return ok(new TextDecoder('utf-8', { fatal: true }).decode(b));
    } catch {
      return fail('invalidField', name);
    }
  };
  const username = text('username');
  if (!username.ok) return username;
  const linkToken = text('link_token');
  if (!linkToken.ok) return linkToken;
  if (at !== p.length) return fail('trailingBytes', 'bytes after the link token');
  return ok({
    ikSecret: p.slice(1, 33),
    sigSeed: p.slice(33, 65),
    userId: p.slice(65, 81),
    username: username.value,
    linkToken: linkToken.value,
  });
}
