//! Between wire (base64 JSON) and protocol types.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chat_proto::rest;
use e2ee_core::{
    IdentityKeyPair, IdentityPublic, KemPublicKey, OneTimePreKeyPair, OneTimePreKeyPublic,
    PqPreKeyPair, PqPreKeyPublic, PreKeyBundle, PublicKey, SignedPreKeyPair, SignedPreKeyPublic,
};

use crate::error::ClientError;

fn bytes<const N: usize>(s: &str, what: &str) -> Result<[u8; N], ClientError> {
    let v = STANDARD
        .decode(s)
        .map_err(|_| ClientError::BadKeys(format!("{what} is not base64")))?;
    v.try_into()
        .map_err(|_| ClientError::BadKeys(format!("{what} must be {N} bytes")))
}

fn public_key(s: &str, what: &str) -> Result<PublicKey, ClientError> {
    PublicKey::from_wire(bytes::<32>(s, what)?)
        .map_err(|e| ClientError::BadKeys(format!("{what}: {e}")))
}

/// A bundle from the server, decoded (not yet verified).
pub(crate) fn bundle(b: &rest::PreKeyBundle) -> Result<PreKeyBundle, ClientError> {
    let identity = IdentityPublic::from_bytes(&bytes::<64>(&b.identity_key, "identityKey")?)
        .map_err(|e| ClientError::BadKeys(format!("identityKey: {e}")))?;
    Ok(PreKeyBundle {
        identity,
        identity_signature: bytes::<64>(&b.identity_signature, "identitySignature")?,
        signed_prekey: SignedPreKeyPublic {
            id: b.signed_prekey.key_id,
            key: public_key(&b.signed_prekey.public_key, "signedPrekey")?,
            signature: bytes::<64>(&b.signed_prekey.signature, "signedPrekey signature")?,
        },
        one_time_prekey: b
            .one_time_prekey
            .as_ref()
            .map(|k| {
                Ok::<_, ClientError>(OneTimePreKeyPublic {
                    id: k.key_id,
                    key: public_key(&k.public_key, "oneTimePrekey")?,
                })
            })
            .transpose()?,
        pq_prekey: b.pq_prekey.as_ref().map(pq_prekey).transpose()?,
    })
}

/// A PQ prekey from the server: length and FIPS 203 form checked here, the
/// signature when the bundle is verified.
fn pq_prekey(k: &rest::PqPreKey) -> Result<PqPreKeyPublic, ClientError> {
    let key = STANDARD
        .decode(&k.public_key)
        .map_err(|_| ClientError::BadKeys("pqPrekey is not base64".into()))?;
    Ok(PqPreKeyPublic {
        id: k.key_id,
        key: KemPublicKey::from_bytes(&key)
            .map_err(|e| ClientError::BadKeys(format!("pqPrekey: {e}")))?,
        signature: bytes::<64>(&k.signature, "pqPrekey signature")?,
    })
}

fn pq_upload(k: &PqPreKeyPair) -> rest::PqPreKey {
    rest::PqPreKey {
        key_id: k.id(),
        public_key: STANDARD.encode(k.public().key.as_bytes()),
        signature: STANDARD.encode(k.signature()),
    }
}

/// What we upload: identity, optionally a signed prekey, one-time prekeys,
/// optionally a last-resort PQ prekey, one-time PQ prekeys.
pub(crate) fn upload(
    identity: &IdentityKeyPair,
    signed: Option<&SignedPreKeyPair>,
    one_time: &[OneTimePreKeyPair],
    pq_last_resort: Option<&PqPreKeyPair>,
    pq_one_time: &[PqPreKeyPair],
) -> rest::PreKeyUpload {
    rest::PreKeyUpload {
        identity_key: identity_b64(identity),
        identity_signature: STANDARD.encode(identity.binding_signature()),
        signed_prekey: signed.map(|s| {
            let p = s.public();
            rest::SignedPreKey {
                key_id: p.id,
                public_key: STANDARD.encode(p.key.as_bytes()),
                signature: STANDARD.encode(p.signature),
            }
        }),
        one_time_prekeys: one_time
            .iter()
            .map(|k| {
                let p = k.public();
                rest::OneTimePreKey {
                    key_id: p.id,
                    public_key: STANDARD.encode(p.key.as_bytes()),
                }
            })
            .collect(),
        pq_last_resort_prekey: pq_last_resort.map(pq_upload),
        pq_one_time_prekeys: pq_one_time.iter().map(pq_upload).collect(),
        pq_replace_one_time: false,
        replace_devices: false,
        registration_id: None,
    }
}

/// Our identity key as the server holds it (base64 `IDPUB`).
pub(crate) fn identity_b64(identity: &IdentityKeyPair) -> String {
    STANDARD.encode(identity.public().to_bytes())
}
