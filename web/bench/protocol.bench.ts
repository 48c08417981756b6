/**
 * The protocol module's speed, in the shapes of e2ee-core's criterion
 * benchmarks (`cargo xtask bench-web` runs both in one go): one-way
 * encrypt + decrypt of 100 bytes, a message turning the DH ratchet, PQXDH
 * setup with the first decrypt, sender-key encrypt and decrypt; and the
 * floor under them, noble's X25519 and ML-KEM-1024 alone.
 */
import { ed25519, x25519 } from '@noble/curves/ed25519.js';
import { ml_kem1024 } from '@noble/post-quantum/ml-kem.js';
import { bench, describe } from 'vitest';

import {
  decodeSenderKeyEnvelope,
  decrypt,
  encrypt,
  identityFromSecrets,
  kemFromSeed,
  pqxdhInitiate,
  pqxdhRespond,
  senderDecrypt,
  senderEncrypt,
  x25519Public,
  type RatchetState,
  type ReceivingChain,
  type Result,
  type SendingChain,
} from '../src/protocol/index.js';

const rnd = (n: number) => crypto.getRandomValues(new Uint8Array(n));
function must<T>(r: Result<T>): T {
  if (!r.ok) throw new Error(r.error.detail);
  return r.value;
}

const alice = must(identityFromSecrets(rnd(32), rnd(32)));
const bob = must(identityFromSecrets(rnd(32), rnd(32)));
const spk = rnd(32);
const opk = rnd(32);
const kp = must(kemFromSeed(rnd(64)));
const msg = rnd(100);

const bundle = {
  idpub: bob.idpub,
  signedPrekeyId: 1,
  signedPrekey: x25519Public(spk),
  oneTimePrekeyId: 1,
  oneTimePrekey: x25519Public(opk),
  pqPrekeyId: 1,
  pqPrekey: kp.encapsulationKey,
};

/** A PQXDH setup by both sides, and the first message decrypted. */
function setup(): { a: RatchetState; b: RatchetState } {
  const started = must(pqxdhInitiate(alice, bundle, rnd(32), rnd(32), rnd(32)));
  const sent = must(encrypt(started.state, msg));
  const b0 = must(pqxdhRespond(bob, started.prekey, spk, opk, kp.decapsulationKey));
  const got = must(decrypt(b0, sent.message, rnd(32)));
  return { a: sent.state, b: got.state };
}

let { a, b } = setup();

describe('e2ee protocol in TypeScript', () => {
  bench('one-way encrypt + decrypt, 100 B (vodozemac_shape_encrypt_decrypt)', () => {
    const out = must(encrypt(a, msg));
    const got = must(decrypt(b, out.message, rnd(32)));
    a = out.state;
    b = got.state;
  });

  bench('a ping-pong round: B→A, A→B, two DH ratchet turns (vodozemac_shape_ping_pong_round)', () => {
    const reply = must(encrypt(b, msg));
    const atA = must(decrypt(a, reply.message, rnd(32)));
    const back = must(encrypt(atA.state, msg));
    const atB = must(decrypt(reply.state, back.message, rnd(32)));
    a = back.state;
    b = atB.state;
  });

  bench('PQXDH setup and first decrypt (pqxdh_initiate_and_first_decrypt)', () => {
    setup();
  });

  const chain: SendingChain = {
    groupId: rnd(16),
    chainId: 7,
    iteration: 0,
    chainKey: rnd(32),
    signingSeed: rnd(32),
  };
  let sending = chain;
  bench('sender-key encrypt, 100 B (sender_key_encrypt_100B)', () => {
    sending = senderEncrypt(sending, msg).chain;
  });

  const receiver: ReceivingChain = {
    groupId: chain.groupId,
    chainId: chain.chainId,
    iteration: 0,
    chainKey: chain.chainKey,
    signingPublic: x25519Public(rnd(32)),
  };
  const one = senderEncrypt(chain, msg);
  const env = must(decodeSenderKeyEnvelope(one.envelope));
  const withKey = { ...receiver, signingPublic: ed25519.getPublicKey(chain.signingSeed) };
  bench('sender-key decrypt, 100 B (sender_key_decrypt_100B)', () => {
    must(senderDecrypt(withKey, env));
  });
});

describe('the floor: noble alone', () => {
  const s = rnd(32);
  const p = x25519Public(rnd(32));
  bench('X25519 scalar multiplication (calibration_x25519_dh)', () => {
    x25519.getSharedSecret(s, p);
  });
  bench('ML-KEM-1024 keygen + encapsulate + decapsulate', () => {
    const k = ml_kem1024.keygen();
    const { cipherText } = ml_kem1024.encapsulate(k.publicKey);
    ml_kem1024.decapsulate(cipherText, k.secretKey);
  });
});
