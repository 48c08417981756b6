/**
 * The Double Ratchet (docs/PROTOCOL.md section 3) as values: `encrypt` and
 * `decrypt` take a state and return the next one, so a failed decryption
 * leaves the caller's state exactly as it was (e2ee-core's invariant).
 * Randomness comes in: the caller passes the next ratchet secret.
 */
import { toHex } from './bytes.js';
import { fail, ok, type Result } from './errors.js';
import { kdfCk, kdfRk } from './kdf.js';
import { dh, x25519Public } from './keys.js';
import { decodeHeader, decryptMessage, encodeHeader, encryptMessage } from './message.js';
import type { RatchetMessage } from './envelope.js';

export const MAX_SKIP = 1000;
export const MAX_SKIPPED_KEYS = 2000;
export const MAX_RECEIVING_CHAINS = 5;

interface Chain {
  readonly dhPublic: Uint8Array;
  readonly chainKey: Uint8Array;
  /** The next message index in the chain. */
  readonly next: number;
}

export interface RatchetState {
  readonly ad: Uint8Array;
  readonly rootKey: Uint8Array;
  readonly sendingSecret: Uint8Array;
  readonly sendingPublic: Uint8Array;
  /** Absent after a turn until the next send derives it. */
  readonly sendingChain: Uint8Array | undefined;
  /** The peer's ratchet key the next sending chain is derived with. */
  readonly theirRatchetKey: Uint8Array | undefined;
  readonly sendIndex: number;
  readonly previousLength: number;
  /** Oldest first; the last is the current one. */
  readonly receiving: readonly Chain[];
  /** `hex(dh_pub):n` → message key, oldest first. */
  readonly skipped: ReadonlyMap<string, Uint8Array>;
}

/** Alice: `SK`, her first ratchet secret, Bob's signed prekey; the first DH ratchet step runs at once. */
export function initAlice(
  sk: Uint8Array,
  ad: Uint8Array,
  firstRatchetSecret: Uint8Array,
  theirSignedPrekey: Uint8Array,
): Result<RatchetState> {
  const out = dh(firstRatchetSecret, theirSignedPrekey);
  if (!out.ok) return out;
  const { rootKey, chainKey } = kdfRk(sk, out.value);
  return ok({
    ad,
    rootKey,
    sendingSecret: firstRatchetSecret,
    sendingPublic: x25519Public(firstRatchetSecret),
    sendingChain: chainKey,
    theirRatchetKey: theirSignedPrekey,
    sendIndex: 0,
    previousLength: 0,
    receiving: [],
    skipped: new Map(),
  });
}

/** Bob: `SK` and his signed prekey as his first ratchet pair. */
export function initBob(sk: Uint8Array, ad: Uint8Array, signedPrekeySecret: Uint8Array): RatchetState {
  return {
    ad,
    rootKey: sk,
    sendingSecret: signedPrekeySecret,
    sendingPublic: x25519Public(signedPrekeySecret),
    sendingChain: undefined,
    theirRatchetKey: undefined,
    sendIndex: 0,
    previousLength: 0,
    receiving: [],
    skipped: new Map(),
  };
}

/** Encrypts the next message; `undefined` error only if the state has no peer key yet. */
export function encrypt(
  state: RatchetState,
  plaintext: Uint8Array,
): Result<{ state: RatchetState; message: RatchetMessage }> {
  let s = state;
  if (!s.sendingChain) {
    if (!s.theirRatchetKey) return fail('invalidField', 'no message received yet to answer');
    const out = dh(s.sendingSecret, s.theirRatchetKey);
    if (!out.ok) return out;
    const { rootKey, chainKey } = kdfRk(s.rootKey, out.value);
    s = { ...s, rootKey, sendingChain: chainKey };
  }
  const chain = s.sendingChain ?? new Uint8Array(32);
  const { messageKey, nextChainKey } = kdfCk(chain);
  const header = encodeHeader({
    dhPublic: s.sendingPublic,
    previousChainLength: s.previousLength,
    index: s.sendIndex,
  });
  const body = encryptMessage(messageKey, s.ad, header, plaintext);
  return ok({
    state: { ...s, sendingChain: nextChainKey, sendIndex: s.sendIndex + 1 },
    message: { header, body },
  });
}

const slot = (dhPublic: Uint8Array, n: number): string => `${toHex(dhPublic)}:${n}`;

/** Walks `chain` to index `until`, storing the skipped keys in `skipped`. */
function skipTo(chain: Chain, until: number, skipped: Map<string, Uint8Array>): Result<Chain> {
  if (until - chain.next > MAX_SKIP) return fail('invalidField', 'too big a message gap');
  let ck = chain.chainKey;
  for (let i = chain.next; i < until; i++) {
    const { messageKey, nextChainKey } = kdfCk(ck);
    skipped.set(slot(chain.dhPublic, i), messageKey);
    while (skipped.size > MAX_SKIPPED_KEYS) {
      const oldest = skipped.keys().next().value;
      if (oldest === undefined) break;
      skipped.delete(oldest);
    }
    ck = nextChainKey;
  }
  return ok({ ...chain, chainKey: ck, next: Math.max(until, chain.next) });
}

/**
 * Decrypts a message. `nextRatchetSecret` (32 random bytes) becomes our new
 * ratchet key if this message turns the ratchet. On any error the caller's
 * state is unchanged: the next state is only returned on success.
 */
export function decrypt(
  state: RatchetState,
  message: RatchetMessage,
  nextRatchetSecret: Uint8Array,
): Result<{ state: RatchetState; plaintext: Uint8Array }> {
  const parsed = decodeHeader(message.header);
  if (!parsed.ok) return parsed;
  const h = parsed.value;
  const skipped = new Map(state.skipped);
  const open = (mk: Uint8Array): Result<Uint8Array> =>
    decryptMessage(mk, state.ad, message.header, message.body);

  // 1. A chain we hold.
  const at = state.receiving.findIndex((c) => toHex(c.dhPublic) === toHex(h.dhPublic));
  const held = state.receiving[at];
  if (held) {
    if (h.index < held.next) {
      const key = slot(h.dhPublic, h.index);
      const mk = skipped.get(key);
      if (!mk) return fail('invalidField', 'a duplicate or expired message');
      const pt = open(mk);
      if (!pt.ok) return pt;
      skipped.delete(key);
      return ok({ state: { ...state, skipped }, plaintext: pt.value });
    }
    const walked = skipTo(held, h.index, skipped);
    if (!walked.ok) return walked;
    const { messageKey, nextChainKey } = kdfCk(walked.value.chainKey);
    const pt = open(messageKey);
    if (!pt.ok) return pt;
    const receiving = state.receiving.map((c, i) =>
      i === at ? { ...walked.value, chainKey: nextChainKey, next: h.index + 1 } : c,
    );
    return ok({ state: { ...state, receiving, skipped }, plaintext: pt.value });
  }
  // 2. A stored key of a forgotten chain.
  const stored = skipped.get(slot(h.dhPublic, h.index));
  if (stored) {
    const pt = open(stored);
    if (!pt.ok) return pt;
    skipped.delete(slot(h.dhPublic, h.index));
    return ok({ state: { ...state, skipped }, plaintext: pt.value });
  }
  // 3. Turn the ratchet: close the current chain at `pn`, derive the new one.
  const current = state.receiving[state.receiving.length - 1];
  if (current) {
    const closed = skipTo(current, h.previousChainLength, skipped);
    if (!closed.ok) return closed;
  }
  const out = dh(state.sendingSecret, h.dhPublic);
  if (!out.ok) return out;
  const turned = kdfRk(state.rootKey, out.value);
  const fresh = skipTo({ dhPublic: h.dhPublic, chainKey: turned.chainKey, next: 0 }, h.index, skipped);
  if (!fresh.ok) return fresh;
  const { messageKey, nextChainKey } = kdfCk(fresh.value.chainKey);
  const pt = open(messageKey);
  if (!pt.ok) return pt;
  const receiving = [...state.receiving, { ...fresh.value, chainKey: nextChainKey, next: h.index + 1 }].slice(
    -MAX_RECEIVING_CHAINS,
  );
  return ok({
    state: {
      ...state,
      rootKey: turned.rootKey,
      sendingSecret: nextRatchetSecret,
      sendingPublic: x25519Public(nextRatchetSecret),
      sendingChain: undefined,
      theirRatchetKey: h.dhPublic,
      previousLength: state.sendIndex,
      sendIndex: 0,
      receiving,
      skipped,
    },
    plaintext: pt.value,
  });
}
