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
  associatedData,
  decodeSenderKeyEnvelope,
  decrypt,
  encrypt,
  identityFromSecrets,
  initAlice,
  initBob,
  initiatorDhs,
  kemDecapsulate,
  kemEncapsulate,
  kemFromSeed,
  pqxdhSecret,
  responderDhs,
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
const ad = associatedData(alice.idpub, bob.idpub);
const msg = rnd(100);

/** A PQXDH setup by both sides, and the first message decrypted. */
function setup(): { a: RatchetState; b: RatchetState } {
  const ek = rnd(32);
  const kem = must(kemEncapsulate(kp.encapsulationKey, rnd(32)));
  const dhs = must(
    initiatorDhs({
      ourIkPrivate: alice.ikPrivate,
      ourEkPrivate: ek,
      theirIkPublic: bob.idpub.subarray(0, 32),
      theirSpkPublic: x25519Public(spk),
      theirOpkPublic: x25519Public(opk),
    }),
  );
  const a0 = must(initAlice(pqxdhSecret(dhs, kem.sharedSecret), ad, rnd(32), x25519Public(spk)));
  const sent = must(encrypt(a0, msg));
  const ss = must(kemDecapsulate(kp.decapsulationKey, kem.ciphertext));
  const bdhs = must(
    responderDhs({
      ourIkPrivate: bob.ikPrivate,
      ourSpkPrivate: spk,
      ourOpkPrivate: opk,
      theirIkPublic: alice.idpub.subarray(0, 32),
      theirEkPublic: x25519Public(ek),
    }),
  );
  const b0 = initBob(pqxdhSecret(bdhs, ss), ad, spk);
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
