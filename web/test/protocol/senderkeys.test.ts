/** protocol-v1.json's sender-key chain: three signed group messages, byte for byte. */
import { ed25519 } from '@noble/curves/ed25519.js';
import { describe, expect, it } from 'vitest';

import {
  decodeDistribution,
  decodeSenderKeyEnvelope,
  encodeDistribution,
  senderDecrypt,
  senderDecryptSkipped,
  senderEncrypt,
  toHex,
  type SendingChain,
} from '../../src/protocol/index.js';
import { hex, must, vectors } from './vectors.js';

type Row = Record<string, unknown>;
const sk = (vectors('protocol-v1.json') as Record<string, Row>)['sender_key'] as Row;
const own = (vectors('own-v1.json') as Record<string, Row>)['sender_key'] as Row;

describe('sender keys', () => {
  const start: SendingChain = {
    groupId: hex(sk['group_id']),
    chainId: sk['chain_id'] as number,
    iteration: sk['iteration'] as number,
    chainKey: hex(sk['chain_key']),
    signingSeed: hex(sk['signing_seed']),
  };
  const messages = sk['messages'] as Row[];

  it('encrypts the three known messages byte for byte and decrypts them', () => {
    expect(toHex(ed25519.getPublicKey(start.signingSeed))).toBe(sk['signing_pub']);
    let chain = start;
    let receiver = must(decodeDistribution(encodeDistribution(start)));
    for (const m of messages) {
      const out = senderEncrypt(chain, hex(m['plaintext']));
      expect(toHex(out.envelope)).toBe(m['envelope']);
      chain = out.chain;
      const got = must(senderDecrypt(receiver, must(decodeSenderKeyEnvelope(out.envelope))));
      expect(toHex(got.plaintext)).toBe(m['plaintext']);
      receiver = got.chain;
    }
  });

  it("own-v1.json's chain, starting at iteration 5, byte for byte", () => {
    let chain: SendingChain = {
      groupId: hex(own['group_id']),
      chainId: own['chain_id'] as number,
      iteration: own['iteration'] as number,
      chainKey: hex(own['chain_key']),
      signingSeed: hex(own['signing_seed']),
    };
    expect(chain.iteration).toBe(5);
    expect(toHex(ed25519.getPublicKey(chain.signingSeed))).toBe(own['signing_pub']);
    for (const m of own['messages'] as Row[]) {
      const out = senderEncrypt(chain, hex(m['plaintext']));
      expect(toHex(out.envelope)).toBe(m['envelope']);
      chain = out.chain;
    }
  });

  it('out of order through skipped keys; a forged signature and a replay are refused, typed', () => {
    const receiver = must(decodeDistribution(encodeDistribution(start)));
    const envs = messages.map((m) => must(decodeSenderKeyEnvelope(hex(m['envelope']))));
    const [first, , third] = envs;
    if (!first || !third) throw new Error('three messages');
    const late = must(senderDecrypt(receiver, third));
    expect(late.skipped.size).toBe(2);
    const key = late.skipped.get(`${start.chainId}:0`);
    if (!key) throw new Error('a skipped key');
    expect(toHex(must(senderDecryptSkipped(receiver.signingPublic, key, first)))).toBe(
      messages[0]?.['plaintext'],
    );
    const replay = senderDecrypt(late.chain, third);
    expect(replay.ok).toBe(false);
    const forged = hex(messages[0]?.['envelope']);
    forged[forged.length - 1] = (forged[forged.length - 1] ?? 0) ^ 1;
    const r = senderDecrypt(receiver, must(decodeSenderKeyEnvelope(forged)));
    expect(r.ok ? 'opened' : r.error.kind).toBe('badSignature');
    for (const n of [0, 10, 104]) {
      expect(decodeSenderKeyEnvelope(new Uint8Array(n).fill(3)).ok).toBe(false);
    }
    expect(decodeDistribution(new Uint8Array(88)).ok).toBe(false);
  });
});
