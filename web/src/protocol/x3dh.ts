/**
 * X3DH's shared secret (docs/PROTOCOL.md section 2), both roles; the PQXDH
 * shared secret adds ML-KEM-1024's `SS` (section 2a). The caller has
 * verified the bundle's signatures first.
 */
import { concat } from './bytes.js';
import { type Result, ok } from './errors.js';
import { PQXDH_INFO, X3DH_INFO, sharedSecret } from './kdf.js';
import { dh } from './keys.js';

export interface InitiatorInputs {
  readonly ourIkPrivate: Uint8Array;
  readonly ourEkPrivate: Uint8Array;
  readonly theirIkPublic: Uint8Array;
  readonly theirSpkPublic: Uint8Array;
  readonly theirOpkPublic?: Uint8Array | undefined;
}

export interface ResponderInputs {
  readonly ourIkPrivate: Uint8Array;
  readonly ourSpkPrivate: Uint8Array;
  readonly ourOpkPrivate?: Uint8Array | undefined;
  readonly theirIkPublic: Uint8Array;
  readonly theirEkPublic: Uint8Array;
}

function collect(pairs: readonly [Uint8Array, Uint8Array][]): Result<Uint8Array[]> {
  const out: Uint8Array[] = [];
  for (const [secret, peer] of pairs) {
    const r = dh(secret, peer);
    if (!r.ok) return r;
    out.push(r.value);
  }
  return ok(out);
}

/** `DH1 = DH(IK_A, SPK_B)`, `DH2 = DH(EK_A, IK_B)`, `DH3 = DH(EK_A, SPK_B)`, `DH4 = DH(EK_A, OPK_B)`. */
export function initiatorDhs(i: InitiatorInputs): Result<Uint8Array[]> {
  const pairs: [Uint8Array, Uint8Array][] = [
    [i.ourIkPrivate, i.theirSpkPublic],
    [i.ourEkPrivate, i.theirIkPublic],
    [i.ourEkPrivate, i.theirSpkPublic],
  ];
  if (i.theirOpkPublic) pairs.push([i.ourEkPrivate, i.theirOpkPublic]);
  return collect(pairs);
}

/** Bob's mirror: `DH(SPK_B, IK_A)`, `DH(IK_B, EK_A)`, `DH(SPK_B, EK_A)`, `DH(OPK_B, EK_A)`. */
export function responderDhs(r: ResponderInputs): Result<Uint8Array[]> {
  const pairs: [Uint8Array, Uint8Array][] = [
    [r.ourSpkPrivate, r.theirIkPublic],
    [r.ourIkPrivate, r.theirEkPublic],
    [r.ourSpkPrivate, r.theirEkPublic],
  ];
  if (r.ourOpkPrivate) pairs.push([r.ourOpkPrivate, r.theirEkPublic]);
  return collect(pairs);
}

/** Version 1's `SK`. */
export function x3dhSecret(dhs: readonly Uint8Array[]): Uint8Array {
  return sharedSecret(X3DH_INFO, dhs);
}

/** Version 2's `SK`: the DH outputs, then ML-KEM's `SS`. */
export function pqxdhSecret(dhs: readonly Uint8Array[], ss: Uint8Array): Uint8Array {
  return sharedSecret(PQXDH_INFO, [...dhs, ss]);
}

/** `AD = IDPUB_A || IDPUB_B`, initiator first. */
export function associatedData(initiatorIdpub: Uint8Array, responderIdpub: Uint8Array): Uint8Array {
  return concat(initiatorIdpub, responderIdpub);
}
