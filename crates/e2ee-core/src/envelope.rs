//! Envelope encoding and decoding (DESIGN.md section 2, "Envelopes").
//!
//! ```text
//! 0x01 Message        : 0x01 || header (41) || body
//! 0x02 PreKey message : 0x02 || IDPUB_A (64) || EK_A.pub (32) || spk_id (u32)
//!                       || opk_id (u32, 0xFFFFFFFF = none) || Message
//! 0x04 PQXDH PreKey   : 0x04 || IDPUB_A (64) || EK_A.pub (32) || spk_id (u32)
//!                       || opk_id (u32, 0xFFFFFFFF = none) || pqpk_id (u32)
//!                       || CT (1568) || Message
//! 0x03 Sender-key     : 0x03 || group_id (16) || chain_id (u32) || iteration (u32)
//!                       || body || signature (64)
//! header              : version (u8 = 1) || dh_pub (32) || pn (u32) || n (u32)
//! ```
//!
//! Every decoder returns a [`DecodeError`] on malformed input and never panics;
//! `fuzz/` drives them with arbitrary bytes.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::error::DecodeError;
use crate::kdf::TAG_LENGTH;
use crate::keys::{IdentityPublic, NO_ONE_TIME_PREKEY, PublicKey};
use crate::pq::{KEM_CIPHERTEXT_LENGTH, KemCiphertext};

/// Envelope kind byte of a plain ratchet message.
pub const KIND_MESSAGE: u8 = 0x01;
/// Envelope kind byte of a PreKey message.
pub const KIND_PREKEY: u8 = 0x02;
/// Envelope kind byte of a sender-key (group) message.
pub const KIND_SENDER_KEY: u8 = 0x03;
/// Envelope kind byte of a PQXDH PreKey message (protocol version 2).
pub const KIND_PQ_PREKEY: u8 = 0x04;
/// Protocol version carried in every ratchet header.
pub const HEADER_VERSION: u8 = 1;
/// The prefix of an envelope's text form in JSON.
pub const TEXT_PREFIX: &str = "E2EE:";

/// A tiny bounds-checked reader: every `take` returns an error instead of panicking.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { bytes }
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.bytes.len() < n {
            return Err(DecodeError::Truncated {
                needed: n - self.bytes.len(),
            });
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    pub(crate) fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.bytes)
    }

    pub(crate) fn finish(self) -> Result<(), DecodeError> {
        match self.bytes.len() {
            0 => Ok(()),
            n => Err(DecodeError::TrailingBytes(n)),
        }
    }
}

/// The Double Ratchet header: the sender's ratchet key, the previous chain's
/// length and this message's index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The sender's current ratchet public key.
    pub dh_pub: PublicKey,
    /// Number of messages in the sender's previous sending chain.
    pub pn: u32,
    /// This message's index in the current sending chain.
    pub n: u32,
}

impl Header {
    /// Encoded length.
    pub const LENGTH: usize = 41;

    /// The 41 header bytes.
    pub fn to_bytes(&self) -> [u8; 41] {
        let mut out = [0u8; 41];
        out[0] = HEADER_VERSION;
        out[1..33].copy_from_slice(self.dh_pub.as_bytes());
        out[33..37].copy_from_slice(&self.pn.to_be_bytes());
        out[37..41].copy_from_slice(&self.n.to_be_bytes());
        out
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let version = r.u8()?;
        if version != HEADER_VERSION {
            return Err(DecodeError::UnsupportedVersion(version));
        }
        Ok(Self {
            dh_pub: PublicKey::from_wire(r.array()?).map_err(|_| DecodeError::NonCanonicalKey)?,
            pn: r.u32()?,
            n: r.u32()?,
        })
    }

    /// Decodes exactly 41 header bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let h = Self::read(&mut r)?;
        r.finish()?;
        Ok(h)
    }
}

/// A ratchet message: header and `tag || ciphertext`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageEnvelope {
    /// The ratchet header.
    pub header: Header,
    /// `tag (16) || ciphertext`.
    pub body: Vec<u8>,
}

impl MessageEnvelope {
    fn write(&self, out: &mut Vec<u8>) {
        out.push(KIND_MESSAGE);
        out.extend_from_slice(&self.header.to_bytes());
        out.extend_from_slice(&self.body);
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let kind = r.u8()?;
        if kind != KIND_MESSAGE {
            return Err(DecodeError::UnknownKind(kind));
        }
        let header = Header::read(r)?;
        let body = r.rest();
        if body.len() < TAG_LENGTH {
            return Err(DecodeError::BodyTooShort(body.len()));
        }
        Ok(Self {
            header,
            body: body.to_vec(),
        })
    }
}

/// A PreKey message: the X3DH data and the first ratchet message(s) of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreKeyEnvelope {
    /// The initiator's `IDPUB`.
    pub identity: IdentityPublic,
    /// The initiator's ephemeral key `EK_A.pub` (the session's base key).
    pub base_key: PublicKey,
    /// The responder's signed prekey id used.
    pub signed_prekey_id: u32,
    /// The responder's one-time prekey id used, if any.
    pub one_time_prekey_id: Option<u32>,
    /// PQXDH: the responder's PQ prekey id and the KEM ciphertext (kind
    /// `0x04`); `None` for an X3DH PreKey message of version 1 (`0x02`).
    pub pq: Option<PqPreKeyUse>,
    /// The ratchet message.
    pub message: MessageEnvelope,
}

/// The post-quantum part of a PQXDH PreKey message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PqPreKeyUse {
    /// The responder's PQ prekey id encapsulated to.
    pub prekey_id: u32,
    /// `CT`.
    pub ciphertext: KemCiphertext,
}

/// A sender-key (group) message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SenderKeyEnvelope {
    /// The group's UUID bytes.
    pub group_id: [u8; 16],
    /// The sender's chain id.
    pub chain_id: u32,
    /// The message's iteration in the chain.
    pub iteration: u32,
    /// `tag (16) || ciphertext`.
    pub body: Vec<u8>,
    /// Ed25519 signature by the chain's signing key over all bytes before it.
    pub signature: [u8; 64],
}

impl SenderKeyEnvelope {
    /// Length of the fixed part before the body.
    pub const PREFIX_LENGTH: usize = 1 + 16 + 4 + 4;

    /// The bytes the signature covers: everything before it.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::PREFIX_LENGTH + self.body.len() + 64);
        out.push(KIND_SENDER_KEY);
        out.extend_from_slice(&self.group_id);
        out.extend_from_slice(&self.chain_id.to_be_bytes());
        out.extend_from_slice(&self.iteration.to_be_bytes());
        out.extend_from_slice(&self.body);
        out
    }
}

/// Any of the three envelope kinds.
// The PreKey variant is larger (it carries a parsed identity key), but an
// envelope lives only between the wire and a decryption: boxing would cost an
// allocation per message for no memory saved.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Envelope {
    /// `0x01`: a ratchet message on an established session.
    Message(MessageEnvelope),
    /// `0x02` / `0x04`: a ratchet message with the X3DH or PQXDH data.
    PreKey(PreKeyEnvelope),
    /// `0x03`: a group message under a sender key.
    SenderKey(SenderKeyEnvelope),
}

impl Envelope {
    /// The binary encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Envelope::Message(m) => {
                out.reserve(1 + Header::LENGTH + m.body.len());
                m.write(&mut out);
            }
            Envelope::PreKey(p) => {
                out.reserve(
                    1 + 64
                        + 32
                        + 8
                        + 4
                        + KEM_CIPHERTEXT_LENGTH
                        + 1
                        + Header::LENGTH
                        + p.message.body.len(),
                );
                out.push(if p.pq.is_some() {
                    KIND_PQ_PREKEY
                } else {
                    KIND_PREKEY
                });
                out.extend_from_slice(&p.identity.to_bytes());
                out.extend_from_slice(p.base_key.as_bytes());
                out.extend_from_slice(&p.signed_prekey_id.to_be_bytes());
                out.extend_from_slice(
                    &p.one_time_prekey_id
                        .unwrap_or(NO_ONE_TIME_PREKEY)
                        .to_be_bytes(),
                );
                if let Some(pq) = &p.pq {
                    out.extend_from_slice(&pq.prekey_id.to_be_bytes());
                    out.extend_from_slice(pq.ciphertext.as_bytes());
                }
                p.message.write(&mut out);
            }
            Envelope::SenderKey(s) => {
                out = s.signed_bytes();
                out.extend_from_slice(&s.signature);
            }
        }
        out
    }

    /// Decodes any envelope kind; a typed error on any malformed input.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let Some(&kind) = bytes.first() else {
            return Err(DecodeError::Truncated { needed: 1 });
        };
        let mut r = Reader::new(bytes);
        match kind {
            KIND_MESSAGE => Ok(Envelope::Message(MessageEnvelope::read(&mut r)?)),
            KIND_PREKEY | KIND_PQ_PREKEY => {
                r.u8()?;
                let identity = IdentityPublic::from_bytes(&r.array::<64>()?)
                    .map_err(|_| DecodeError::InvalidIdentityKey)?;
                let base_key =
                    PublicKey::from_wire(r.array()?).map_err(|_| DecodeError::NonCanonicalKey)?;
                let signed_prekey_id = r.u32()?;
                let opk = r.u32()?;
                let pq = if kind == KIND_PQ_PREKEY {
                    let prekey_id = r.u32()?;
                    let ciphertext = KemCiphertext::from_bytes(r.take(KEM_CIPHERTEXT_LENGTH)?)
                        .map_err(|_| DecodeError::Truncated { needed: 0 })?;
                    Some(PqPreKeyUse {
                        prekey_id,
                        ciphertext,
                    })
                } else {
                    None
                };
                let message = MessageEnvelope::read(&mut r)?;
                Ok(Envelope::PreKey(PreKeyEnvelope {
                    identity,
                    base_key,
                    signed_prekey_id,
                    one_time_prekey_id: (opk != NO_ONE_TIME_PREKEY).then_some(opk),
                    pq,
                    message,
                }))
            }
            KIND_SENDER_KEY => {
                r.u8()?;
                let group_id = r.array()?;
                let chain_id = r.u32()?;
                let iteration = r.u32()?;
                let rest = r.rest();
                if rest.len() < TAG_LENGTH + 64 {
                    return Err(DecodeError::BodyTooShort(rest.len().saturating_sub(64)));
                }
                let (body, sig) = rest.split_at(rest.len() - 64);
                let mut signature = [0u8; 64];
                signature.copy_from_slice(sig);
                Ok(Envelope::SenderKey(SenderKeyEnvelope {
                    group_id,
                    chain_id,
                    iteration,
                    body: body.to_vec(),
                    signature,
                }))
            }
            other => Err(DecodeError::UnknownKind(other)),
        }
    }

    /// The JSON text form: `"E2EE:" || base64(bytes)` (standard alphabet, padded).
    pub fn to_text(&self) -> String {
        let mut s = String::from(TEXT_PREFIX);
        BASE64.encode_string(self.to_bytes(), &mut s);
        s
    }

    /// Parses the JSON text form.
    pub fn from_text(text: &str) -> Result<Self, DecodeError> {
        let b64 = text
            .strip_prefix(TEXT_PREFIX)
            .ok_or(DecodeError::MissingPrefix)?;
        let bytes = BASE64.decode(b64).map_err(|_| DecodeError::InvalidBase64)?;
        Self::from_bytes(&bytes)
    }
}
