/**
 * Interop through the real server with the Rust `chat`: a TypeScript
 * device and a Rust one converse both ways, each starting a PQXDH session
 * once (the TypeScript side as responder, then a second TypeScript user as
 * initiator), and both compute the same safety number.
 *
 * Needs `target/debug/chat` (`cargo xtask web` builds it and sets
 * E2EE_WEB_INTEROP=1, which makes a missing binary a failure rather than
 * a skip).
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';

import { HeadlessClient, UntrustedIdentityError, type ClientEvent } from '../../src/client/client.js';
import {
  bindingSignature,
  identityFromSecrets,
  kemFromSeed,
  safetyNumber,
  signPqPrekey,
  signPrekey,
  x25519Public,
} from '../../src/protocol/index.js';
import type { SocketLike } from '../../src/transport/socket.js';

const CHAT = fileURLToPath(new URL('../../../target/debug/chat', import.meta.url));
const required = process.env['E2EE_WEB_INTEROP'] === '1';
const run = promisify(execFile);

const factory = (url: string): SocketLike => new WebSocket(url) as unknown as SocketLike;

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      const port = typeof a === 'object' && a ? a.port : 0;
      s.close(() => {
        resolve(port);
      });
    });
    s.on('error', reject);
  });
}

let server: ChildProcess | undefined;
let dir = '';
let url = '';

async function chat(profile: string, ...args: string[]): Promise<string> {
  const { stdout } = await run(CHAT, ['--profile', profile, ...args], {
    env: {
      PATH: process.env['PATH'] ?? '',
      E2EE_CHAT_HOME: join(dir, 'home'),
      E2EE_CHAT_SERVER: url,
      E2EE_CHAT_PASSPHRASE: `${profile} store passphrase`,
      E2EE_CHAT_PASSWORD: `${profile}-password-long`,
      E2EE_CHAT_NO_AGENT: '1',
    },
    timeout: 60_000,
  });
  return stdout;
}

const objects = (out: string): Record<string, unknown>[] =>
  out
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as Record<string, unknown>);

function next(client: HeadlessClient, pred: (e: ClientEvent) => boolean, ms = 30_000): Promise<ClientEvent> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      reject(new Error('no such event in time'));
    }, ms);
    client.on((e) => {
      if (pred(e)) {
        clearTimeout(timer);
        resolve(e);
      }
    });
  });
}

const present = existsSync(CHAT);
const suite = present || required ? describe : describe.skip;

suite('the TypeScript client and the Rust chat, through the real server', () => {
  beforeAll(async () => {
    if (!present) throw new Error(`${CHAT} is missing: cargo build -p chat-cli`);
    dir = mkdtempSync(join(tmpdir(), 'e2ee-web-interop-'));
    const port = await freePort();
    url = `http://127.0.0.1:${port}`;
    // One address registers every user here: the per-address limit is raised.
    const config = join(dir, 'server.toml');
    writeFileSync(config, '[limits]\nregistrations_per_minute = 1000\n');
    server = spawn(
      CHAT,
      ['server', '--config', config, '--listen', `127.0.0.1:${port}`, '--data-dir', join(dir, 'data')],
      { stdio: 'ignore' },
    );
    const until = Date.now() + 30_000;
    for (;;) {
      try {
        if ((await fetch(`${url}/health`)).ok) break;
      } catch {
        // Not up yet.
      }
      if (Date.now() > until) throw new Error('the server did not start');
      await new Promise((r) => setTimeout(r, 100));
    }
  }, 60_000);

  afterAll(() => {
    server?.kill('SIGTERM');
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('a conversation both ways, each side starting a session once', async () => {
    const web = await HeadlessClient.register(url, 'webby', 'webby-password-long');
    await web.connect(factory);
    const registered = objects(await chat('rusty', '--json', 'register', 'rusty'));
    const rustyId = String(registered[0]?.['userId']);

    // Rust starts: the TypeScript device answers PQXDH and decrypts.
    const heard = next(web, (e) => e.type === 'message');
    await chat('rusty', 'send', 'webby', 'hello from rust');
    const got = await heard;
    expect(got).toMatchObject({ type: 'message', from: rustyId, text: 'hello from rust' });

    // The TypeScript device answers on that session; Rust reads it.
    await web.sendText(rustyId, 'hello from typescript');
    const history = objects(await chat('rusty', '--json', 'history', 'webby'));
    const bodies = history.filter((m) => m['event'] === 'message').map((m) => m['body']);
    expect(bodies).toEqual(['hello from rust', 'hello from typescript']);

    // A second TypeScript user starts the session (PQXDH initiator).
    const web2 = await HeadlessClient.register(url, 'webby2', 'webby2-password-long');
    await web2.connect(factory);
    await web2.sendText(rustyId, 'first from typescript');
    const h2 = objects(await chat('rusty', '--json', 'history', 'webby2'));
    expect(h2.filter((m) => m['event'] === 'message').map((m) => m['body'])).toEqual([
      'first from typescript',
    ]);
    // ...and Rust answers it on that session.
    const back = next(web2, (e) => e.type === 'message');
    await chat('rusty', 'send', 'webby2', 'and back from rust');
    expect(await back).toMatchObject({ text: 'and back from rust', from: rustyId });

    // The same safety number on both sides.
    const sn = objects(await chat('rusty', '--json', 'safety-number', 'webby'))[0];
    const rustIdpub = await web.rest.deviceBundles(rustyId);
    const theirs = rustIdpub.bundles[0]?.bundle.identityKey ?? '';
    const ours = safetyNumber(
      web.identity.idpub,
      web.userId,
      Uint8Array.from(Buffer.from(theirs, 'base64')),
      rustyId,
    );
    expect(ours.digits).toBe(sn?.['safetyNumber']);
    web.close();
    web2.close();
  }, 120_000);

  it("a Rust owner's signed group: the TypeScript member verifies the chain and reads the group", async () => {
    const rustyId = String(objects(await chat('rusty', '--json', 'whoami'))[0]?.['userId']);
    const member = await HeadlessClient.register(url, 'webby4', 'webby4-password-long');
    await member.connect(factory);
    const heard = next(member, (e) => e.type === 'groupMessage' || e.type === 'undecryptable');
    const made = objects(await chat('rusty', '--json', 'group', 'create', 'room', 'webby4'));
    const groupId = String(made[0]?.['id']);
    await chat('rusty', 'send', '--group', 'room', 'hello group');
    expect(await heard).toMatchObject({ type: 'groupMessage', groupId, from: rustyId, text: 'hello group' });
    // The TypeScript member writes to the group: its sender key goes to
    // the members the verified chain admits, and Rust reads the message.
    await member.sendGroupText(groupId, 'hello from the typescript member');
    let bodies: unknown[] = [];
    for (let i = 0; i < 50 && !bodies.includes('hello from the typescript member'); i++) {
      const h = objects(await chat('rusty', '--json', 'history', '--group', 'room'));
      bodies = h.filter((m) => m['event'] === 'message').map((m) => m['body']);
      if (!bodies.includes('hello from the typescript member')) await new Promise((r) => setTimeout(r, 200));
    }
    expect(bodies).toEqual(['hello group', 'hello from the typescript member']);
    member.close();
  }, 120_000);

  it('a file from Rust, downloaded and checked; typing; a read receipt back', async () => {
    const rustyId = String(objects(await chat('rusty', '--json', 'whoami'))[0]?.['userId']);
    const web5 = await HeadlessClient.register(url, 'webby5', 'webby5-password-long');
    await web5.connect(factory);
    const file = join(dir, 'notes.bin');
    const bytes = Uint8Array.from({ length: 5000 }, (_, i) => (i * 31) % 256);
    writeFileSync(file, bytes);
    const arrived = next(web5, (e) => e.type === 'file');
    await chat('rusty', 'send', 'webby5', '--file', file, 'the notes');
    const got = await arrived;
    if (got.type !== 'file') throw new Error('a file');
    expect(got.fileName).toBe('notes.bin');
    expect(Buffer.from(await web5.download(got.pointer)).equals(Buffer.from(bytes))).toBe(true);
    // Typing reaches the connected TypeScript device.
    const typing = next(web5, (e) => e.type === 'typing');
    await chat('rusty', 'typing', 'webby5');
    expect(await typing).toMatchObject({ from: rustyId, typing: true });
    // Read on the TypeScript side: Rust shows its file as read.
    web5.markRead(rustyId, [got.id]);
    let status: unknown;
    for (let i = 0; i < 50 && status !== 'read'; i++) {
      const h = objects(await chat('rusty', '--json', 'history', 'webby5'));
      status = h.find((m) => m['id'] === got.id)?.['status'];
      if (status !== 'read') await new Promise((r) => setTimeout(r, 200));
    }
    expect(status).toBe('read');
    web5.close();
  }, 120_000);

  it('offline delivery: what Rust sent while the TypeScript device was away arrives in order', async () => {
    const rustyId = String(objects(await chat('rusty', '--json', 'whoami'))[0]?.['userId']);
    const away = await HeadlessClient.register(url, 'webby6', 'webby6-password-long');
    await away.connect(factory);
    away.close();
    for (const t of ['one', 'two', 'three']) await chat('rusty', 'send', 'webby6', t);
    const texts: string[] = [];
    const all = new Promise<void>((resolve) => {
      away.on((e) => {
        if (e.type === 'message' && e.from === rustyId) texts.push(e.text);
        if (texts.length === 3) resolve();
      });
    });
    await away.connect(factory);
    await all;
    expect(texts).toEqual(['one', 'two', 'three']);
    // Acknowledged once kept: a new connection gets none of them again.
    away.close();
    const again: string[] = [];
    away.on((e) => {
      if (e.type === 'message') again.push(e.text);
    });
    await away.connect(factory);
    await new Promise((r) => setTimeout(r, 500));
    expect(again).toEqual([]);
    away.close();
  }, 120_000);

  it('message features both ways: a TypeScript reaction shown by Rust, a Rust edit and delete seen in TypeScript', async () => {
    const rustyId = String(objects(await chat('rusty', '--json', 'whoami'))[0]?.['userId']);
    const web7 = await HeadlessClient.register(url, 'webby7', 'webby7-password-long');
    await web7.connect(factory);
    const arrived = next(web7, (e) => e.type === 'message');
    await chat('rusty', 'send', 'webby7', 'Lunch on Friday?');
    const msg = await arrived;
    if (msg.type !== 'message') throw new Error('a message');
    await web7.react(rustyId, msg.id, '👍');
    let reactions: unknown;
    for (let i = 0; i < 50 && !reactions; i++) {
      const h = objects(await chat('rusty', '--json', 'history', 'webby7'));
      const m = h.find((x) => x['id'] === msg.id);
      const r = m?.['reactions'] as { emoji: string }[] | undefined;
      if (r?.length) reactions = r.map((x) => x.emoji);
      else await new Promise((res) => setTimeout(res, 200));
    }
    expect(reactions).toEqual(['👍']);
    const edited = next(web7, (e) => e.type === 'edited');
    await chat('rusty', 'edit', msg.id, 'Lunch on Saturday?');
    expect(await edited).toMatchObject({ about: msg.id, text: 'Lunch on Saturday?', from: rustyId });
    const deleted = next(web7, (e) => e.type === 'deleted');
    await chat('rusty', 'delete', msg.id);
    expect(await deleted).toMatchObject({ about: msg.id, from: rustyId });
    web7.close();
  }, 120_000);

  it('a lying server that adds a device under its own key gets nothing (DESIGN.md section 10)', async () => {
    const rusty = objects(await chat('rusty', '--json', 'whoami'))[0];
    const rustyId = String(rusty?.['userId']);
    // The server's own identity, with a bundle it signed itself.
    const rnd = (n: number) => crypto.getRandomValues(new Uint8Array(n));
    const evil = identityFromSecrets(rnd(32), rnd(32));
    if (!evil.ok) throw new Error('identity');
    const e = evil.value;
    const spk = x25519Public(rnd(32));
    const kem = kemFromSeed(rnd(64));
    if (!kem.ok) throw new Error('kem');
    const b64 = (b: Uint8Array) => Buffer.from(b).toString('base64');
    const forged = {
      bundles: [
        {
          deviceId: 2,
          registrationId: 77,
          bundle: {
            userId: rustyId,
            identityKey: b64(e.idpub),
            identitySignature: b64(bindingSignature(e)),
            signedPrekey: { keyId: 1, publicKey: b64(spk), signature: b64(signPrekey(e, 1, spk)) },
            pqPrekey: {
              keyId: 1,
              publicKey: b64(kem.value.encapsulationKey),
              signature: b64(signPqPrekey(e.sigSeed, 1, kem.value.encapsulationKey)),
            },
          },
        },
      ],
    };
    // The lying server: its REST answers the ghost device's bundle; its
    // socket answers the first send with "a copy for device 2 is missing".
    const lyingFetch: typeof fetch = (input, init) =>
      (input instanceof Request ? input.url : input.toString()).endsWith(
        `/api/users/${rustyId}/devices/2/prekeys`,
      )
        ? Promise.resolve(new Response(JSON.stringify(forged), { status: 200 }))
        : fetch(input, init);
    const sentCopies: unknown[] = [];
    let lied = false;
    const lyingFactory = (u: string): SocketLike => {
      const real = factory(u);
      const send = real.send.bind(real);
      real.send = (data: string) => {
        const f = JSON.parse(data) as { type: string; payload: { id?: string; copies?: unknown[] } };
        if (f.type === 'message') {
          sentCopies.push(...(f.payload.copies ?? []));
          if (!lied) {
            lied = true;
            const conflict = {
              type: 'error',
              payload: {
                code: 'conflict',
                message: 'devices changed',
                id: f.payload.id,
                devices: { missing: [{ userId: rustyId, deviceId: 2, registrationId: 77 }] },
              },
            };
            setTimeout(() => real.onmessage?.({ data: JSON.stringify(conflict) }), 0);
            return;
          }
        }
        send(data);
      };
      return real;
    };
    const web3 = await HeadlessClient.register(url, 'webby3', 'webby3-password-long', undefined, lyingFetch);
    await web3.connect(lyingFactory);
    await expect(web3.sendText(rustyId, 'for rusty only')).rejects.toBeInstanceOf(UntrustedIdentityError);
    // Nothing was ever encrypted to the server's key: every copy made was
    // for rusty's real device 1.
    for (const c of sentCopies) expect(c).toMatchObject({ userId: rustyId, deviceId: 1 });
    web3.close();
  }, 120_000);
});
