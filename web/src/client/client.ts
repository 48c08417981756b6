/**
 * A headless client in TypeScript (issue 34, first slice): one device of an
 * account, on the protocol module, the REST API and the socket. It
 * registers and publishes its keys (X25519, Ed25519, signed ML-KEM-1024
 * prekeys), starts PQXDH sessions per device and answers them, sends texts
 * as version-2 copies (with the conflict rules of docs/API.md), receives
 * and decrypts, and acknowledges only after the new session state is kept.
 * State lives in memory (`MemoryStore`); the browser's IndexedDB store
 * comes with the web app. Not yet: groups, receipts, typing, attachments,
 * message features, linking, the outbox across restarts, reconnection.
 */
import { base64 } from '@scure/base';
import { parse as parseUuid, stringify as stringifyUuid, v7 as uuidv7 } from 'uuid';

import {
  bindingSignature,
  concat,
  decodeChecked,
  decodeDistribution,
  decodeEnvelope,
  decodeRecord,
  decodeSenderKeyEnvelope,
  DISTRIBUTION_LEN,
  decrypt,
  encodeDistribution,
  encodeMessage,
  encodePreKey,
  encrypt,
  equalCt,
  fromHex,
  identityFromSecrets,
  kemFromSeed,
  openAttachment,
  PayloadKind,
  padPayload,
  pqxdhInitiate,
  pqxdhRespond,
  replayChain,
  senderDecrypt,
  senderEncrypt,
  signPqPrekey,
  signPrekey,
  toHex,
  u64be,
  verifyBinding,
  verifyPqPrekey,
  verifySignedPrekey,
  x25519Public,
  type AttachmentPointer,
  type IdentityKeyPair,
  type Membership,
  type PreKeyData,
  type RatchetState,
  type Result,
} from '../protocol/index.js';
import { RestClient, type DeviceBundle } from '../transport/rest.js';
import { Socket, type Frame, type SocketFactory } from '../transport/socket.js';
import {
  MemoryStore,
  UntrustedIdentityError,
  webRandom,
  type ClientEvent,
  type Random,
  type Session,
} from './store.js';

export { MemoryStore, UntrustedIdentityError, webRandom, type ClientEvent, type Random } from './store.js';

/** A new message: a fresh time-ordered id and the padded payload carrying it. */
function newPayload(
  kind: number,
  body: Uint8Array,
  reference?: Uint8Array,
): { id: string; padded: Uint8Array } {
  const id = uuidv7();
  const padded = must(
    padPayload({ messageId: parseUuid(id), kind, timestampMs: BigInt(Date.now()), body, reference }),
    'payload',
  );
  return { id, padded };
}

const must = <T>(r: Result<T>, what: string): T => {
  if (!r.ok) throw new Error(`${what}: ${r.error.kind}: ${r.error.detail}`);
  return r.value;
};

const key = (userId: string, deviceId: number): string => `${userId}:${deviceId}`;
const uuidString = (b: Uint8Array): string => stringifyUuid(b);
const CONTENT_PREFIX = 'E2EE:';

/** A reaction, edit or delete, by the payload kind that carries it. */
interface Change {
  readonly type: 'reaction' | 'edited' | 'deleted';
  readonly about: string;
  readonly text: string;
}
const CHANGES = new Map<number, Change['type']>([
  [PayloadKind.reaction, 'reaction'],
  [PayloadKind.edit, 'edited'],
  [PayloadKind.delete, 'deleted'],
]);
/** The largest file this client downloads (as the Rust client's default). */
export const MAX_ATTACHMENT = 16 * 1024 * 1024;

export class HeadlessClient {
  private socket: Socket | undefined;
  private readonly pending = new Map<string, (f: Frame) => void>();
  private readonly listeners: ((e: ClientEvent) => void)[] = [];

  private constructor(
    readonly rest: RestClient,
    readonly userId: string,
    readonly username: string,
    readonly deviceId: number,
    readonly identity: IdentityKeyPair,
    private readonly store: MemoryStore,
    private readonly random: Random,
  ) {}

  /** Registers a new account (device 1) and publishes its keys. */
  static async register(
    server: string,
    username: string,
    password: string,
    random: Random = webRandom,
    fetchImpl?: typeof fetch,
  ): Promise<HeadlessClient> {
    const rest = new RestClient(server, fetchImpl);
    const identity = must(identityFromSecrets(random(32), random(32)), 'identity');
    const registrationId = new DataView(random(4).buffer).getUint32(0) & 0x3fff_ffff;
    const auth = await rest.register(username, password, registrationId);
    rest.token = auth.token;
    const store = new MemoryStore();
    const client = new HeadlessClient(
      rest,
      auth.user.id,
      auth.user.username,
      auth.deviceId ?? 1,
      identity,
      store,
      random,
    );
    await client.publishKeys(registrationId);
    return client;
  }

  private async publishKeys(registrationId: number): Promise<void> {
    const id = this.identity;
    const spk = this.random(32);
    this.store.signedPrekeys.set(1, spk);
    const spkPub = x25519Public(spk);
    const oneTime = [];
    for (let i = 1; i <= 20; i++) {
      const s = this.random(32);
      this.store.oneTimePrekeys.set(i, s);
      oneTime.push({ keyId: i, publicKey: base64.encode(x25519Public(s)) });
    }
    const pq = (keyId: number, lastResort: boolean) => {
      const seed = this.random(64);
      this.store.pqPrekeys.set(keyId, { seed, lastResort });
      const ek = must(kemFromSeed(seed), 'ML-KEM key').encapsulationKey;
      return {
        keyId,
        publicKey: base64.encode(ek),
        signature: base64.encode(signPqPrekey(id.sigSeed, keyId, ek)),
      };
    };
    await this.rest.uploadPrekeys({
      identityKey: base64.encode(id.idpub),
      identitySignature: base64.encode(bindingSignature(id)),
      signedPrekey: {
        keyId: 1,
        publicKey: base64.encode(spkPub),
        signature: base64.encode(signPrekey(id, 1, spkPub)),
      },
      oneTimePrekeys: oneTime,
      pqLastResortPrekey: pq(1, true),
      pqOneTimePrekeys: [2, 3, 4, 5, 6].map((k) => pq(k, false)),
      registrationId,
    });
  }

  on(listener: (e: ClientEvent) => void): void {
    this.listeners.push(listener);
  }

  private emit(e: ClientEvent): void {
    for (const l of this.listeners) l(e);
  }

  /** Connects; queued messages arrive as events. */
  async connect(factory: SocketFactory): Promise<void> {
    const token = this.rest.token;
    if (!token) throw new Error('not logged in');
    this.socket = await Socket.open(this.rest.baseUrl, token, factory, (f) => {
      this.onFrame(f);
    });
  }

  close(): void {
    this.socket?.close();
    this.socket = undefined;
  }

  private onFrame(f: Frame): void {
    const id = f.payload['id'];
    if ((f.type === 'ack' || f.type === 'error') && typeof id === 'string') {
      const waiter = this.pending.get(id);
      if (waiter) {
        this.pending.delete(id);
        waiter(f);
      }
      return;
    }
    if (f.type === 'message') this.receive(f.payload);
    if (f.type === 'status') {
      this.emit({
        type: 'status',
        messageId: String(f.payload['messageId']),
        status: String(f.payload['status']),
        by: String(f.payload['userId']),
      });
    }
    if (f.type === 'typing') {
      const g = f.payload['groupId'];
      this.emit({
        type: 'typing',
        from: String(f.payload['from']),
        typing: f.payload['typing'] === true,
        groupId: typeof g === 'string' ? g : undefined,
      });
    }
    if (f.type === 'groupMessage') void this.receiveGroup(f.payload);
  }

  /** Decrypts one relayed message; the new state is kept before `delivered` goes. */
  private receive(p: Record<string, unknown>): void {
    const id = String(p['id']);
    const from = String(p['from']);
    const fromDevice = typeof p['fromDevice'] === 'number' ? p['fromDevice'] : 1;
    const content = String(p['content']);
    try {
      const got = this.open(id, from, fromDevice, content);
      if (typeof got === 'string') this.emit({ type: 'message', id, from, fromDevice, text: got });
      else if (got && 'about' in got) this.emit({ type: got.type, about: got.about, text: got.text, from });
      else if (got)
        this.emit({ type: 'file', id, from, fileName: got.fileName, mimeType: got.mimeType, pointer: got });
    } catch (e) {
      this.emit({ type: 'undecryptable', id, from, reason: String(e) });
    }
    // Kept (in memory) or refused for good: acknowledged either way.
    this.socket?.send('delivered', { messageIds: [id] });
  }

  private open(
    id: string,
    from: string,
    fromDevice: number,
    content: string,
  ): string | AttachmentPointer | Change | undefined {
    if (!content.startsWith(CONTENT_PREFIX)) throw new Error('not an E2EE content');
    const env = must(decodeEnvelope(base64.decode(content.slice(CONTENT_PREFIX.length))), 'envelope');
    const k = key(from, fromDevice);
    let session = this.store.sessions.get(k);
    let consumed: { opk?: number | undefined; pq?: number } = {};
    if (env.kind === 'prekey' && !(session?.baseKey && equalCt(session.baseKey, env.prekey.baseKey))) {
      if (!this.pin(from, env.prekey.idpub)) this.emit({ type: 'identityChanged', userId: from });
      const started = this.answer(env.prekey);
      session = started.session;
      consumed = started.consumed;
    }
    if (!session) throw new Error('no session for this device');
    const out = must(decrypt(session.state, env.message, this.random(32)), 'decrypt');
    const payload = must(decodeChecked(out.plaintext, parseUuid(id)), 'payload');
    // Committed: the new state, the spent one-time keys.
    session.state = out.state;
    session.prekey = undefined;
    this.store.sessions.set(k, session);
    if (consumed.opk !== undefined) this.store.oneTimePrekeys.delete(consumed.opk);
    if (consumed.pq !== undefined && this.store.pqPrekeys.get(consumed.pq)?.lastResort === false) {
      this.store.pqPrekeys.delete(consumed.pq);
    }
    if (payload.kind === PayloadKind.text || payload.kind === PayloadKind.reply) {
      return new TextDecoder().decode(payload.body);
    }
    if (payload.kind === PayloadKind.senderKey) this.pendingKeys.push({ from, body: payload.body });
    if ((payload.kind === PayloadKind.image || payload.kind === PayloadKind.file) && payload.attachment) {
      return payload.attachment;
    }
    const type = CHANGES.get(payload.kind);
    if (type && payload.reference) {
      return { type, about: uuidString(payload.reference), text: new TextDecoder().decode(payload.body) };
    }
    return undefined;
  }

  /** Sender-key distributions received, checked against the group's chain before use. */
  private readonly pendingKeys: { from: string; body: Uint8Array }[] = [];

  /**
   * Verifies the group's chain of signed changes (every record signed by a
   * member its role allowed, under the identity pinned for its signer) and
   * takes the distributions of members it admits whose chain head matches
   * ours. A server's member list is never taken on its word.
   */
  private async membership(groupId: string): Promise<Membership> {
    const records = (await this.rest.groupChanges(groupId)).changes.map((c) =>
      must(decodeRecord(base64.decode(c.record)), 'change record'),
    );
    const trusted = (user: Uint8Array, idpub: Uint8Array): boolean => {
      const id = uuidString(user);
      return id === this.userId ? equalCt(idpub, this.identity.idpub) : this.pin(id, idpub);
    };
    const m = must(replayChain(records, trusted), 'the group chain');
    this.store.memberships.set(groupId, m);
    return m;
  }

  private async takeKeys(): Promise<void> {
    for (const k of this.pendingKeys.splice(0)) {
      const d = must(decodeDistribution(k.body.slice(0, DISTRIBUTION_LEN)), 'distribution');
      const groupId = uuidString(d.groupId);
      const m = await this.membership(groupId);
      if (!m.members.has(toHex(parseUuid(k.from)))) continue;
      if (k.body.length === DISTRIBUTION_LEN + 40) {
        const epoch = new DataView(k.body.buffer, k.body.byteOffset + DISTRIBUTION_LEN, 8).getBigUint64(
          0,
          false,
        );
        const head = k.body.slice(DISTRIBUTION_LEN + 8);
        if (epoch !== m.epoch || !equalCt(head, m.head)) continue;
      }
      this.store.senderChains.set(`${groupId}:${k.from}:${d.chainId}`, d);
    }
  }

  /** A group message: only from a member the verified chain admits, on a chain it sent us. */
  private async receiveGroup(p: Record<string, unknown>): Promise<void> {
    const id = String(p['id']);
    const from = String(p['from']);
    const groupId = String(p['groupId']);
    try {
      await this.takeKeys();
      const content = String(p['content']);
      if (!content.startsWith(CONTENT_PREFIX)) throw new Error('not an E2EE content');
      const env = must(
        decodeSenderKeyEnvelope(base64.decode(content.slice(CONTENT_PREFIX.length))),
        'envelope',
      );
      if (uuidString(env.groupId) !== groupId) throw new Error('a group message for another group');
      const m = this.store.memberships.get(groupId) ?? (await this.membership(groupId));
      if (!m.members.has(toHex(parseUuid(from)))) throw new Error('the sender is not a verified member');
      const k = `${groupId}:${from}:${env.chainId}`;
      const chain = this.store.senderChains.get(k);
      if (!chain) throw new Error('no sender key for this chain yet');
      const out = must(senderDecrypt(chain, env), 'decrypt');
      const payload = must(decodeChecked(out.plaintext, parseUuid(id)), 'payload');
      this.store.senderChains.set(k, out.chain);
      if (payload.kind === PayloadKind.text || payload.kind === PayloadKind.reply) {
        this.emit({ type: 'groupMessage', id, groupId, from, text: new TextDecoder().decode(payload.body) });
      }
    } catch (e) {
      this.emit({ type: 'undecryptable', id, from, reason: String(e) });
    }
    this.socket?.send('delivered', { messageIds: [id] });
  }

  /** The responder's PQXDH (or X3DH for a version-1 PreKey message). */
  private answer(p: PreKeyData): { session: Session; consumed: { opk?: number | undefined; pq?: number } } {
    const spk = this.store.signedPrekeys.get(p.signedPrekeyId);
    if (!spk) throw new Error('unknown signed prekey');
    const opk =
      p.oneTimePrekeyId === undefined ? undefined : this.store.oneTimePrekeys.get(p.oneTimePrekeyId);
    if (p.oneTimePrekeyId !== undefined && !opk) throw new Error('unknown one-time prekey');
    if (!p.pq) throw new Error('a version-1 PreKey message: this client speaks version 2');
    const pq = this.store.pqPrekeys.get(p.pq.prekeyId);
    if (!pq) throw new Error('unknown PQ prekey');
    const dk = must(kemFromSeed(pq.seed), 'ML-KEM key').decapsulationKey;
    const state = must(pqxdhRespond(this.identity, p, spk, opk, dk), 'PQXDH');
    return {
      session: { state, peerIdpub: p.idpub, registrationId: 0, prekey: undefined, baseKey: p.baseKey },
      consumed: { ...(opk ? { opk: p.oneTimePrekeyId } : {}), pq: p.pq.prekeyId },
    };
  }

  /** Pins `idpub` for `userId` when none is; whether it is the pinned one. */
  private pin(userId: string, idpub: Uint8Array): boolean {
    const held = this.store.pinned.get(userId);
    if (!held) {
      this.store.pinned.set(userId, idpub);
      return true;
    }
    return equalCt(held, idpub);
  }

  /** Accepts `idpub` as `userId`'s identity in place of the pinned one (the user's decision). */
  trust(userId: string, idpub: Uint8Array): void {
    this.store.pinned.set(userId, idpub);
  }

  /** The initiator's PQXDH from a claimed bundle, after every signature check. */
  private start(userId: string, d: DeviceBundle): Session {
    const b = d.bundle;
    const idpub = base64.decode(b.identityKey);
    must(verifyBinding(idpub, base64.decode(b.identitySignature)), 'identity binding');
    // Before any DH: a device under another identity than the one pinned
    // is refused whole, whatever the server says about it.
    if (!this.pin(userId, idpub)) throw new UntrustedIdentityError(userId);
    const spkPub = base64.decode(b.signedPrekey.publicKey);
    must(
      verifySignedPrekey(idpub, b.signedPrekey.keyId, spkPub, base64.decode(b.signedPrekey.signature)),
      'signed prekey',
    );
    if (!b.pqPrekey) throw new Error(`${userId} device ${d.deviceId} has no PQ prekey: refused (version 2)`);
    const ek = base64.decode(b.pqPrekey.publicKey);
    must(verifyPqPrekey(idpub, b.pqPrekey.keyId, ek, base64.decode(b.pqPrekey.signature)), 'PQ prekey');
    const started = must(
      pqxdhInitiate(
        this.identity,
        {
          idpub,
          signedPrekeyId: b.signedPrekey.keyId,
          signedPrekey: spkPub,
          oneTimePrekeyId: b.oneTimePrekey?.keyId,
          oneTimePrekey: b.oneTimePrekey ? base64.decode(b.oneTimePrekey.publicKey) : undefined,
          pqPrekeyId: b.pqPrekey.keyId,
          pqPrekey: ek,
        },
        this.random(32),
        this.random(32),
        this.random(32),
      ),
      'PQXDH',
    );
    return {
      state: started.state,
      peerIdpub: idpub,
      registrationId: d.registrationId,
      baseKey: undefined,
      prekey: started.prekey,
    };
  }

  /**
   * Sends a text to a group: the group's chain of signed changes is
   * verified first, our sender key goes (with the chain head we verified)
   * to the members it admits and to nobody else, then one sender-key
   * ciphertext goes to the group.
   */
  async sendGroupText(groupId: string, text: string): Promise<string> {
    const m = await this.membership(groupId);
    if (!m.members.has(toHex(parseUuid(this.userId)))) throw new Error('not a member of the group');
    let chain = this.store.ownChains.get(groupId);
    if (!chain) {
      chain = {
        groupId: parseUuid(groupId),
        chainId: new DataView(this.random(4).buffer).getUint32(0),
        iteration: 0,
        chainKey: this.random(32),
        signingSeed: this.random(32),
      };
      this.store.ownChains.set(groupId, chain);
    }
    const head = concat(u64be(m.epoch), m.head);
    for (const member of m.members.keys()) {
      const user = uuidString(fromHex(member) ?? new Uint8Array(16));
      const sent = `${groupId}:${user}:${chain.chainId}`;
      if (user === this.userId || this.store.distributed.has(sent)) continue;
      await this.sendPayload(user, PayloadKind.senderKey, concat(encodeDistribution(chain), head));
      this.store.distributed.add(sent);
    }
    const { id, padded } = newPayload(PayloadKind.text, new TextEncoder().encode(text));
    const out = senderEncrypt(chain, padded);
    const content = CONTENT_PREFIX + base64.encode(out.envelope);
    const answer = await this.frame('groupMessage', id, { id, groupId, content, messageType: 'e2ee' });
    if (answer.type !== 'ack') throw new Error(`refused: ${String(answer.payload['message'])}`);
    this.store.ownChains.set(groupId, out.chain);
    return id;
  }

  /** Tells `to` their messages were read (they see ✓✓ read). */
  markRead(to: string, messageIds: readonly string[]): void {
    this.socket?.send('read', { to, messageIds });
  }

  /** Tells `to` (or a group's members) we are typing, or stopped. */
  typing(to: { readonly userId: string } | { readonly groupId: string }, typing: boolean): void {
    this.socket?.send('typing', 'userId' in to ? { to: to.userId, typing } : { groupId: to.groupId, typing });
  }

  /** Downloads a received file: at most its stated size, its hash checked, then decrypted, then its length. */
  async download(pointer: AttachmentPointer): Promise<Uint8Array> {
    const size = Number(pointer.size);
    if (!Number.isSafeInteger(size) || size > MAX_ATTACHMENT) throw new Error('the file is over the limit');
    const ciphertext = await this.rest.media(pointer.mediaId, size + 16);
    return must(openAttachment(pointer, ciphertext), 'attachment');
  }

  /**
   * Sends a text to every device of `userId`, and waits for the server's
   * `ack`. A refused device set (`conflict`) is mended as docs/API.md
   * says, and sent again with the same id.
   */
  async sendText(userId: string, text: string): Promise<string> {
    return this.sendPayload(userId, PayloadKind.text, new TextEncoder().encode(text));
  }

  /** Reacts to a message of the conversation with `userId` (`""` removes our reaction). */
  async react(userId: string, messageId: string, emoji: string): Promise<string> {
    return this.sendPayload(
      userId,
      PayloadKind.reaction,
      new TextEncoder().encode(emoji),
      parseUuid(messageId),
    );
  }

  /** Sends one payload of `kind` to every device of `userId` (see {@link sendText}). */
  private async sendPayload(
    userId: string,
    kind: number,
    body: Uint8Array,
    reference?: Uint8Array,
  ): Promise<string> {
    const { id, padded } = newPayload(kind, body, reference);
    let devices = [...this.store.sessions.keys()]
      .filter((k) => k.startsWith(`${userId}:`))
      .map((k) => Number(k.split(':')[1]));
    if (devices.length === 0) {
      for (const d of (await this.rest.deviceBundles(userId)).bundles) {
        this.store.sessions.set(key(userId, d.deviceId), this.start(userId, d));
      }
      devices = [...this.store.sessions.keys()]
        .filter((k) => k.startsWith(`${userId}:`))
        .map((k) => Number(k.split(':')[1]));
    }
    for (let attempt = 0; attempt < 4; attempt++) {
      // Encrypted on copies of the states: kept only once the server took them.
      const next = new Map<string, RatchetState>();
      const copies = devices.map((deviceId) => {
        const s = this.store.sessions.get(key(userId, deviceId));
        if (!s) throw new Error('a session per device');
        const out = must(encrypt(s.state, padded), 'encrypt');
        next.set(key(userId, deviceId), out.state);
        const bytes = s.prekey ? encodePreKey(s.prekey, out.message) : encodeMessage(out.message);
        return {
          userId,
          deviceId,
          registrationId: s.registrationId,
          content: CONTENT_PREFIX + base64.encode(bytes),
        };
      });
      const answer = await this.frame('message', id, { id, to: userId, messageType: 'e2ee', copies });
      if (answer.type === 'ack') {
        for (const [k, state] of next) {
          const s = this.store.sessions.get(k);
          if (s) s.state = state;
        }
        return id;
      }
      if (answer.payload['code'] !== 'conflict')
        throw new Error(`refused: ${String(answer.payload['message'])}`);
      devices = await this.mend(
        userId,
        devices,
        answer.payload['devices'] as Record<string, unknown> | undefined,
      );
    }
    throw new Error('the device set kept changing');
  }

  private async mend(
    userId: string,
    devices: number[],
    d: Record<string, unknown> | undefined,
  ): Promise<number[]> {
    type Entry = { userId: string; deviceId: number; registrationId?: number };
    const list = (name: string) =>
      ((d?.[name] as Entry[] | undefined) ?? []).filter((e) => e.userId === userId);
    let out = devices.filter((x) => !list('extra').some((e) => e.deviceId === x));
    for (const e of list('extra')) this.store.sessions.delete(key(userId, e.deviceId));
    for (const e of [...list('missing'), ...list('stale')]) {
      const s = this.store.sessions.get(key(userId, e.deviceId));
      const [bundle] = (await this.rest.deviceBundle(userId, e.deviceId)).bundles;
      if (!bundle) continue;
      if (s && s.registrationId === 0 && equalCt(base64.decode(bundle.bundle.identityKey), s.peerIdpub)) {
        // The session the peer started: the same device, now with its id.
        s.registrationId = bundle.registrationId;
      } else {
        this.store.sessions.set(key(userId, e.deviceId), this.start(userId, bundle));
      }
      if (!out.includes(e.deviceId)) out = [...out, e.deviceId];
    }
    return out;
  }

  /** Sends a frame answered by `ack` or `error` naming `id`, and waits for it. */
  private frame(type: string, id: string, payload: Record<string, unknown>): Promise<Frame> {
    const socket = this.socket;
    if (!socket) return Promise.reject(new Error('not connected'));
    return new Promise((resolve) => {
      this.pending.set(id, resolve);
      socket.send(type, payload);
    });
  }
}
