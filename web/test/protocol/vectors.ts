/** Reading the Rust core's known-answer files (crates/e2ee-core/tests/data). */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

import { fromHex } from '../../src/protocol/bytes.js';
import type { Result } from '../../src/protocol/errors.js';

const DATA = fileURLToPath(new URL('../../../crates/e2ee-core/tests/data/', import.meta.url));

export function vectors(name: string): unknown {
  return JSON.parse(readFileSync(DATA + name, 'utf8')) as unknown;
}

/** Hex from a vector, or a failed test. */
export function hex(s: unknown): Uint8Array {
  if (typeof s !== 'string') throw new Error(`not a hex string: ${String(s)}`);
  const b = fromHex(s);
  if (!b) throw new Error(`not hex: ${s}`);
  return b;
}

/** The value of a `Result`, or a failed test naming the error. */
export function must<T>(r: Result<T>): T {
  if (!r.ok) throw new Error(`${r.error.kind}: ${r.error.detail}`);
  return r.value;
}
