/**
 * Sessions with one peer device (docs/PROTOCOL.md section 3, "Simultaneous
 * initiation"): a current session and up to 10 previous ones. A PreKey
 * message whose base key and identity match a session we hold goes to it;
 * any other starts a new session (through `respond`) that becomes current.
 * A message the current session cannot open is tried on the previous ones,
 * and the one that opens it becomes current. As values: on any error the
 * caller keeps the sessions it had.
 */
import { equalCt } from './bytes.js';
import { encodeMessage, encodePreKey, type Envelope, type PreKeyData } from './envelope.js';
import { fail, ok, type ProtocolError, type Result } from './errors.js';
import { decrypt, encrypt, type RatchetState } from './ratchet.js';

export const MAX_PREVIOUS_SESSIONS = 10;

export interface SessionEntry {
  readonly state: RatchetState;
  readonly peerIdpub: Uint8Array;
  /** The session's base key: ours when we started it, the peer's when it did. */
  readonly baseKey: Uint8Array;
  /** Set while we started it and have heard nothing back (the PreKey phase). */
  readonly prekey: PreKeyData | undefined;
}

export interface PeerSessions {
  readonly current: SessionEntry | undefined;
  /** Newest first. */
  readonly previous: readonly SessionEntry[];
}

export const noSessions: PeerSessions = { current: undefined, previous: [] };

function promote(ps: PeerSessions, entry: SessionEntry, without?: SessionEntry): PeerSessions {
  const previous = [...(ps.current && ps.current !== without ? [ps.current] : []), ...ps.previous]
    .filter((e) => e !== without)
    .slice(0, MAX_PREVIOUS_SESSIONS);
  return { current: entry, previous };
}

/** Starts (or replaces) the current session with one we initiated. */
export function adoptInitiated(ps: PeerSessions, entry: SessionEntry): PeerSessions {
  return promote(ps, entry);
}

/** Encrypts on the current session: a PreKey message while in its PreKey phase. */
export function peerEncrypt(
  ps: PeerSessions,
  plaintext: Uint8Array,
): Result<{ sessions: PeerSessions; bytes: Uint8Array }> {
  const cur = ps.current;
  if (!cur) return fail('invalidField', 'no session with this device');
  const out = encrypt(cur.state, plaintext);
  if (!out.ok) return out;
  const bytes = cur.prekey ? encodePreKey(cur.prekey, out.value.message) : encodeMessage(out.value.message);
  return ok({ sessions: { ...ps, current: { ...cur, state: out.value.state } }, bytes });
}

/**
 * Decrypts one envelope. `respond` makes the responder's first state for a
 * PreKey message no session matches (PQXDH or X3DH with our prekeys);
 * `nextRatchetSecret` is our next ratchet key if a turn happens.
 */
export function peerDecrypt(
  ps: PeerSessions,
  env: Envelope,
  nextRatchetSecret: Uint8Array,
  respond: (p: PreKeyData) => Result<RatchetState>,
): Result<{ sessions: PeerSessions; plaintext: Uint8Array; newSession: boolean }> {
  const all = [...(ps.current ? [ps.current] : []), ...ps.previous];
  const eligible =
    env.kind === 'prekey'
      ? all.filter((e) => equalCt(e.baseKey, env.prekey.baseKey) && equalCt(e.peerIdpub, env.prekey.idpub))
      : all;
  if (env.kind === 'prekey' && eligible.length === 0) {
    const state = respond(env.prekey);
    if (!state.ok) return state;
    const out = decrypt(state.value, env.message, nextRatchetSecret);
    if (!out.ok) return out;
    const entry: SessionEntry = {
      state: out.value.state,
      peerIdpub: env.prekey.idpub,
      baseKey: env.prekey.baseKey,
      prekey: undefined,
    };
    return ok({ sessions: promote(ps, entry), plaintext: out.value.plaintext, newSession: true });
  }
  let first: ProtocolError | undefined;
  for (const e of eligible) {
    const out = decrypt(e.state, env.message, nextRatchetSecret);
    if (out.ok) {
      // Heard back: the peer holds this session, the PreKey phase is over.
      const entry: SessionEntry = { ...e, state: out.value.state, prekey: undefined };
      return ok({ sessions: promote(ps, entry, e), plaintext: out.value.plaintext, newSession: false });
    }
    first ??= out.error;
  }
  return { ok: false, error: first ?? { kind: 'invalidField', detail: 'no session with this device' } };
}
