/**
 * Payloads: own-v1.json's encoded and padded image payload, the worked
 * examples of docs/PROTOCOL.md section 6, and every malformed input as a
 * typed error (never a throw).
 */
import { describe, expect, it } from 'vitest';

import {
  decodeChecked,
  decodePayload,
  encodePayload,
  padPayload,
  PayloadKind,
  toHex,
  type Payload,
} from '../../src/protocol/index.js';
import { hex, must, vectors } from './vectors.js';

type Row = Record<string, unknown>;

const rep = (b: number, n = 16) => new Uint8Array(n).fill(b);
const T = 1_700_000_000_000n;

describe('payloads', () => {
  it("own-v1.json's payload decodes, re-encodes and pads byte for byte", () => {
    const p = (vectors('own-v1.json') as Record<string, Row>)['payload'] as Row;
    const decoded = must(decodePayload(hex(p['encoded'])));
    expect(decoded.kind).toBe(PayloadKind.image);
    expect(decoded.attachment?.fileName).toBe('cat.jpg');
    expect(toHex(must(encodePayload(decoded)))).toBe(p['encoded']);
    expect(toHex(must(padPayload(decoded)))).toBe(p['padded']);
    expect(toHex(must(decodeChecked(hex(p['padded']), decoded.messageId)).messageId)).toBe(
      toHex(decoded.messageId),
    );
    const r = decodeChecked(hex(p['padded']), rep(0));
    expect(r.ok ? 'decoded' : r.error.kind).toBe('idMismatch');
  });

  it('the worked examples of PROTOCOL.md section 6', () => {
    const examples: [Payload, string][] = [
      [
        {
          messageId: rep(0x11),
          kind: PayloadKind.reaction,
          timestampMs: T,
          body: new TextEncoder().encode('👍'),
          reference: rep(0x22),
        },
        '0105' + '11'.repeat(16) + '0000018bcfe56800' + '02' + '00000004' + 'f09f918d' + '22'.repeat(16),
      ],
      [
        {
          messageId: rep(0x33),
          kind: PayloadKind.reply,
          timestampMs: T,
          body: new TextEncoder().encode('ok'),
          reference: rep(0x11),
          quote: { sender: 'a', excerpt: 'hi' },
          expireSecs: 3600,
        },
        '0108' +
          '33'.repeat(16) +
          '0000018bcfe56800' +
          '1a' +
          '00000002' +
          '6f6b' +
          '11'.repeat(16) +
          '0001' +
          '61' +
          '0002' +
          '6869' +
          '00000e10',
      ],
      [
        {
          messageId: rep(0x44),
          kind: PayloadKind.timer,
          timestampMs: T,
          body: Uint8Array.of(0, 1, 0x51, 0x80),
        },
        '010b' + '44'.repeat(16) + '0000018bcfe56800' + '00' + '00000004' + '00015180',
      ],
    ];
    for (const [p, bytes] of examples) {
      expect(toHex(must(encodePayload(p)))).toBe(bytes);
      expect(toHex(must(encodePayload(must(decodePayload(hex(bytes))))))).toBe(bytes);
    }
    expect(hex(examples[0]?.[1]).length).toBe(51);
    expect(hex(examples[1]?.[1]).length).toBe(60);
    expect(hex(examples[2]?.[1]).length).toBe(35);
  });

  it('an unknown kind decodes; unknown flags, short, trailing and bad UTF-8 are typed errors', () => {
    const text: Payload = { messageId: rep(1), kind: 99, timestampMs: 5n, body: Uint8Array.of(1, 2) };
    const bytes = must(encodePayload(text));
    expect(must(decodePayload(bytes)).kind).toBe(99);
    for (let n = 0; n < bytes.length; n++) {
      const r = decodePayload(bytes.slice(0, n));
      expect(r.ok, `prefix of ${n}`).toBe(false);
    }
    const kinds = (b: Uint8Array) => {
      const r = decodePayload(b);
      return r.ok ? 'decoded' : r.error.kind;
    };
    expect(kinds(Uint8Array.of(...bytes, 0))).toBe('trailingBytes');
    const flagged = bytes.slice();
    flagged[26] = 0x40;
    expect(kinds(flagged)).toBe('invalidField');
    expect(kinds(Uint8Array.of(2, ...bytes.slice(1)))).toBe('unknownVersion');
    const quote = must(
      encodePayload({
        ...text,
        kind: PayloadKind.reply,
        quote: { sender: 'a', excerpt: 'b' },
        reference: rep(2),
      }),
    );
    quote[quote.length - 1] = 0xff;
    expect(kinds(quote)).toBe('invalidUtf8');
    expect(encodePayload({ ...text, expireSecs: 0 }).ok).toBe(false);
    expect(encodePayload({ ...text, quote: { sender: 'a', excerpt: 'x'.repeat(201) } }).ok).toBe(false);
  });
});
