/**
 * The protocol of docs/PROTOCOL.md in TypeScript, byte for byte as
 * crates/e2ee-core: no DOM, network, storage or clock; randomness and time
 * are passed in. Primitives only from the audited noble packages.
 */
export * from './bytes.js';
export * from './errors.js';
export * from './fingerprint.js';
export * from './kdf.js';
export * from './keys.js';
export * from './message.js';
export * from './padding.js';
export * from './x3dh.js';
export * from './envelope.js';
export * from './ratchet.js';
export * from './senderkeys.js';
export * from './pq.js';
export * from './payload.js';
export * from './membership.js';
export * from './provision.js';
export * from './attachment.js';
export * from './sessions.js';
export * from './pqxdh.js';
