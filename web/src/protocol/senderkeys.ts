/**
 * Sender Keys (docs/PROTOCOL.md section 4): one chain per member and group,
 * message keys stepped like `KDF_CK`, each envelope signed by the chain's
 * Ed25519 key over every byte before the signature. As values: a failed
 * decryption returns no new state.
 */
import { ed25519 } from '@noble/curves/ed25519.js';
import { hkdf } from '@noble/hashes/hkdf.js';
import { sha256 } from '@noble/hashes/sha2.js';

import { concat, equalCt, u32be, utf8 } from './bytes.js';
import { KIND_SENDER_KEY } from './envelope.js';
import { fail, ok, type Result } from './errors.js';
import { kdfCk } from './kdf.js';
import { verifySignature } from './keys.js';
import { open, seal } from './message.js';

export const SENDER_KEY_INFO = utf8('E2EEChat SenderKey v1');
export const DISTRIBUTION_LEN = 89;
export const DISTRIBUTION_VERSION = 1;
/** How far ahead one message may skip in a chain. */
export const SENDER_MAX_SKIP = 1000;
const TAG_LEN = 16;
const SIG_LEN = 64;
const HEAD_LEN = 1 + 16 + 4 + 4;

/** Our sending chain in a group. */
export interface SendingChain {
  readonly groupId: Uint8Array;
  readonly chainId: number;
  readonly iteration: number;
  readonly chainKey: Uint8Array;
  readonly signingSeed: Uint8Array;
}

/** A member's chain as its distribution gives it (no signing secret). */
export interface ReceivingChain {
  readonly groupId: Uint8Array;
  readonly chainId: number;
  readonly iteration: number;
  readonly chainKey: Uint8Array;
  readonly signingPublic: Uint8Array;
}

/** A decoded sender-key envelope. */
export interface SenderKeyEnvelope {
  readonly groupId: Uint8Array;
  readonly chainId: number;
  readonly iteration: number;
  readonly body: Uint8Array;
  readonly signature: Uint8Array;
  /** Every byte before the signature. */
  readonly signed: Uint8Array;
}

function keys(mk: Uint8Array): { key: Uint8Array; nonce: Uint8Array } {
  const okm = hkdf(sha256, mk, new Uint8Array(32), SENDER_KEY_INFO, 56);
  return { key: okm.slice(0, 32), nonce: okm.slice(32, 56) };
}

/** `version || group_id || chain_id || iteration || chain_key || signing_pub` (89 bytes). */
export function encodeDistribution(c: SendingChain): Uint8Array {
  return concat(
    Uint8Array.of(DISTRIBUTION_VERSION),
    c.groupId,
    u32be(c.chainId),
    u32be(c.iteration),
    c.chainKey,
    ed25519.getPublicKey(c.signingSeed),
  );
}

export function decodeDistribution(bytes: Uint8Array): Result<ReceivingChain> {
  if (bytes.length < DISTRIBUTION_LEN) return fail('truncated', 'a distribution is 89 bytes');
  if (bytes.length > DISTRIBUTION_LEN) return fail('trailingBytes', 'a distribution is 89 bytes');
  if (bytes[0] !== DISTRIBUTION_VERSION) return fail('unknownVersion', `distribution ${bytes[0] ?? 0}`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  return ok({
    groupId: bytes.slice(1, 17),
    chainId: view.getUint32(17, false),
    iteration: view.getUint32(21, false),
    chainKey: bytes.slice(25, 57),
    signingPublic: bytes.slice(57, 89),
  });
}

/** Encrypts and signs the next group message. */
export function senderEncrypt(
  chain: SendingChain,
  plaintext: Uint8Array,
): { chain: SendingChain; envelope: Uint8Array } {
  const { messageKey, nextChainKey } = kdfCk(chain.chainKey);
  const { key, nonce } = keys(messageKey);
  const signed = concat(
    Uint8Array.of(KIND_SENDER_KEY),
    chain.groupId,
    u32be(chain.chainId),
    u32be(chain.iteration),
    seal(key, nonce, plaintext),
  );
  const envelope = concat(signed, ed25519.sign(signed, chain.signingSeed));
  return { chain: { ...chain, iteration: chain.iteration + 1, chainKey: nextChainKey }, envelope };
}

export function decodeSenderKeyEnvelope(bytes: Uint8Array): Result<SenderKeyEnvelope> {
  if (bytes[0] !== KIND_SENDER_KEY) return fail('unknownKind', `envelope kind ${bytes[0] ?? 'none'}`);
  if (bytes.length < HEAD_LEN + TAG_LEN + SIG_LEN)
    return fail('truncated', 'a sender-key message is cut short');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  const signed = bytes.slice(0, bytes.length - SIG_LEN);
  return ok({
    groupId: bytes.slice(1, 17),
    chainId: view.getUint32(17, false),
    iteration: view.getUint32(21, false),
    body: signed.slice(HEAD_LEN),
    signature: bytes.slice(bytes.length - SIG_LEN),
    signed,
  });
}

/**
 * Verifies the signature first, then walks the chain to the message's
 * iteration and decrypts. Returns the chain advanced past it and the keys
 * skipped on the way (`"chainId:iteration"` → message key) for the caller
 * to keep; an older iteration is the caller's (its stored skipped keys).
 */
export function senderDecrypt(
  chain: ReceivingChain,
  env: SenderKeyEnvelope,
): Result<{ chain: ReceivingChain; plaintext: Uint8Array; skipped: Map<string, Uint8Array> }> {
  if (!verifySignature(chain.signingPublic, env.signed, env.signature)) {
    return fail('badSignature', 'the group message is not signed by its chain');
  }
  if (!equalCt(chain.groupId, env.groupId) || chain.chainId !== env.chainId) {
    return fail('invalidField', 'the message is on another chain');
  }
  if (env.iteration < chain.iteration) return fail('invalidField', 'a duplicate or expired message');
  if (env.iteration - chain.iteration > SENDER_MAX_SKIP) return fail('invalidField', 'too big a message gap');
  const skipped = new Map<string, Uint8Array>();
  let ck = chain.chainKey;
  for (let i = chain.iteration; i < env.iteration; i++) {
    const step = kdfCk(ck);
    skipped.set(`${chain.chainId}:${i}`, step.messageKey);
    ck = step.nextChainKey;
  }
  const { messageKey, nextChainKey } = kdfCk(ck);
  const { key, nonce } = keys(messageKey);
  const pt = open(key, nonce, env.body);
  if (!pt.ok) return pt;
  return ok({
    chain: { ...chain, iteration: env.iteration + 1, chainKey: nextChainKey },
    plaintext: pt.value,
    skipped,
  });
}

/** Opens a message with a stored skipped key (signature checked first). */
export function senderDecryptSkipped(
  signingPublic: Uint8Array,
  messageKey: Uint8Array,
  env: SenderKeyEnvelope,
): Result<Uint8Array> {
  if (!verifySignature(signingPublic, env.signed, env.signature)) {
    return fail('badSignature', 'the group message is not signed by its chain');
  }
  const { key, nonce } = keys(messageKey);
  return open(key, nonce, env.body);
}
