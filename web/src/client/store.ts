/**
 * The client's types and its in-memory store: the events it raises, the
 * typed refusal of an untrusted identity, and `MemoryStore`, the device's
 * secrets, sessions, pinned identities and group state (the browser's
 * IndexedDB store comes with the web app).
 */
import type {
  AttachmentPointer,
  Membership,
  PreKeyData,
  RatchetState,
  ReceivingChain,
  SendingChain,
} from '../protocol/index.js';

/** Randomness for the client layer (the protocol takes it as bytes). */
export type Random = (n: number) => Uint8Array;

export const webRandom: Random = (n) => crypto.getRandomValues(new Uint8Array(n));

/** What the client tells its application. */
export type ClientEvent =
  | {
      readonly type: 'message';
      readonly id: string;
      readonly from: string;
      readonly fromDevice: number;
      readonly text: string;
    }
  | {
      readonly type: 'file';
      readonly id: string;
      readonly from: string;
      readonly fileName: string;
      readonly mimeType: string;
      readonly pointer: AttachmentPointer;
    }
  /** A reaction, an edit or a delete-for-everyone of a message (`about`), from its author or a reader. */
  | {
      readonly type: 'reaction' | 'edited' | 'deleted';
      readonly from: string;
      readonly about: string;
      readonly text: string;
    }
  /** One of our messages moved on at a recipient (`delivered`, `read`). */
  | { readonly type: 'status'; readonly messageId: string; readonly status: string; readonly by: string }
  | {
      readonly type: 'typing';
      readonly from: string;
      readonly typing: boolean;
      readonly groupId?: string | undefined;
    }
  | {
      readonly type: 'groupMessage';
      readonly id: string;
      readonly groupId: string;
      readonly from: string;
      readonly text: string;
    }
  | { readonly type: 'undecryptable'; readonly id: string; readonly from: string; readonly reason: string }
  /** A user's identity is not the one pinned for them: nothing goes to it until `trust`. */
  | { readonly type: 'identityChanged'; readonly userId: string };

/**
 * A send refused before anything was encrypted: a device of `userId` shows
 * an identity other than the one pinned for them (DESIGN.md section 10: a
 * server cannot add a reader by adding a device under its own key).
 */
export class UntrustedIdentityError extends Error {
  constructor(readonly userId: string) {
    super(
      `${userId} shows an identity key other than the one pinned: nothing was sent (trust or verify it first)`,
    );
    this.name = 'UntrustedIdentityError';
  }
}

export interface Session {
  state: RatchetState;
  readonly peerIdpub: Uint8Array;
  registrationId: number;
  /** Set while we started it and have heard nothing back (the PreKey phase). */
  prekey: PreKeyData | undefined;
  /** The peer's base key, when the peer started it. */
  readonly baseKey: Uint8Array | undefined;
}

/** The device's secrets and sessions, in memory. */
export class MemoryStore {
  signedPrekeys = new Map<number, Uint8Array>();
  oneTimePrekeys = new Map<number, Uint8Array>();
  pqPrekeys = new Map<number, { seed: Uint8Array; lastResort: boolean }>();
  sessions = new Map<string, Session>();
  /** The identity (`IDPUB`) pinned per user: the first seen, or one the user trusted. */
  pinned = new Map<string, Uint8Array>();
  /** Members' sender-key chains: `groupId:userId:chainId`. */
  senderChains = new Map<string, ReceivingChain>();
  /** Each group's membership as its verified chain of signed changes leaves it. */
  memberships = new Map<string, Membership>();
  /** Our sending chain per group. */
  ownChains = new Map<string, SendingChain>();
  /** `groupId:userId:chainId` our chain was sent to. */
  distributed = new Set<string>();
}
