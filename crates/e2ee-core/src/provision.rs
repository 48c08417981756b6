//! Linking a device (protocol version 2, DESIGN.md section 8, "Linking"):
//! the new device shows a [`LinkCode`] (a provisioning address and a fresh
//! X25519 key, as a QR code or text); a device already linked seals the
//! account's identity, user id and a single-use link token to that key
//! ([`seal`]); the server only forwards the sealed bytes, and only the new
//! device can [`open`] them.
//!
//! ```text
//! code     = "e2ee-link:2:" || address || ":" || base64url-nopad(device_pub (32))
//! sealed   = 0x02 || eph_pub (32) || nonce (24) || XSalsa20-Poly1305(key, nonce, contents)
//! key      = HKDF-SHA256(salt = 32 zero bytes, ikm = X25519(eph, device_pub),
//!                        info = "E2EEChat provisioning v2" || u16 len || address
//!                               || eph_pub || device_pub, L = 32)
//! contents = 0x02 || IK secret (32) || SIG seed (32) || user_id (16)
//!            || u16 len || username || u16 len || link_token
//! ```

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hkdf::Hkdf;
use rand_core::CryptoRngCore;
use sha2::Sha256;
use xsalsa20poly1305::XSalsa20Poly1305;
use xsalsa20poly1305::aead::{Aead, KeyInit};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::envelope::Reader;
use crate::error::{DecodeError, ProvisionError};
use crate::keys::{IdentityKeyPair, KeyPair, PublicKey};
use crate::membership::UserId;

/// The version byte of sealed messages and their contents.
pub const PROVISION_VERSION: u8 = 2;
/// The HKDF info label.
pub const PROVISION_INFO: &[u8] = b"E2EEChat provisioning v2";
/// The text prefix of a link code.
pub const LINK_CODE_PREFIX: &str = "e2ee-link:2:";
/// Longest provisioning address, username or link token, in bytes.
pub const MAX_FIELD_BYTES: usize = 256;

/// The new device's half: its provisioning key pair, kept in memory only
/// until the sealed message arrives.
pub struct ProvisioningKeys {
    pair: KeyPair,
}

impl ProvisioningKeys {
    /// A fresh key pair.
    pub fn generate(rng: &mut impl CryptoRngCore) -> Self {
        Self {
            pair: KeyPair::generate(rng),
        }
    }

    /// The public key the link code carries.
    pub fn public(&self) -> PublicKey {
        self.pair.public()
    }

    /// The code to show for `address` (the one the server gave the
    /// provisioning socket).
    pub fn code(&self, address: &str) -> Result<LinkCode, ProvisionError> {
        LinkCode::new(address, self.public())
    }
}

impl std::fmt::Debug for ProvisioningKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProvisioningKeys")
            .field("public", &self.public())
            .finish_non_exhaustive()
    }
}

/// What the QR code shows: where to send the sealed message and to which
/// key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkCode {
    address: String,
    key: PublicKey,
}

impl LinkCode {
    /// A code for `address` (printable ASCII without `:`, at most
    /// [`MAX_FIELD_BYTES`]) and the new device's key.
    pub fn new(address: &str, key: PublicKey) -> Result<Self, ProvisionError> {
        let ok = !address.is_empty()
            && address.len() <= MAX_FIELD_BYTES
            && address.bytes().all(|b| b.is_ascii_graphic() && b != b':');
        if !ok {
            return Err(ProvisionError::MalformedCode);
        }
        Ok(Self {
            address: address.to_owned(),
            key,
        })
    }

    /// The provisioning address.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The new device's key.
    pub fn key(&self) -> PublicKey {
        self.key
    }

    /// `e2ee-link:2:<address>:<base64url key>`.
    pub fn to_text(&self) -> String {
        format!(
            "{LINK_CODE_PREFIX}{}:{}",
            self.address,
            URL_SAFE_NO_PAD.encode(self.key.as_bytes())
        )
    }

    /// Parses [`LinkCode::to_text`]'s form (surrounding whitespace allowed).
    pub fn from_text(text: &str) -> Result<Self, ProvisionError> {
        let rest = text
            .trim()
            .strip_prefix(LINK_CODE_PREFIX)
            .ok_or(ProvisionError::MalformedCode)?;
        let (address, key) = rest.rsplit_once(':').ok_or(ProvisionError::MalformedCode)?;
        let bytes: [u8; 32] = URL_SAFE_NO_PAD
            .decode(key)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or(ProvisionError::MalformedCode)?;
        let key = PublicKey::from_wire(bytes).map_err(|_| ProvisionError::MalformedCode)?;
        LinkCode::new(address, key)
    }
}

/// What a linked device hands a new one. Zeroizes on drop; `Debug` shows
/// only public parts.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct ProvisionContents {
    ik_secret: [u8; 32],
    sig_seed: [u8; 32],
    /// The account.
    pub user_id: UserId,
    /// Its name.
    pub username: String,
    /// The single-use token the new device registers with.
    pub link_token: String,
}

impl ProvisionContents {
    /// Contents carrying `identity`.
    pub fn new(
        identity: &IdentityKeyPair,
        user_id: UserId,
        username: &str,
        link_token: &str,
    ) -> Result<Self, ProvisionError> {
        if username.len() > MAX_FIELD_BYTES {
            return Err(ProvisionError::TooLong("username"));
        }
        if link_token.len() > MAX_FIELD_BYTES {
            return Err(ProvisionError::TooLong("link token"));
        }
        let (ik, sig) = identity.to_secret_bytes();
        Ok(Self {
            ik_secret: *ik,
            sig_seed: *sig,
            user_id,
            username: username.to_owned(),
            link_token: link_token.to_owned(),
        })
    }

    /// The account's identity key pair.
    pub fn identity(&self) -> IdentityKeyPair {
        IdentityKeyPair::from_secret_bytes(self.ik_secret, self.sig_seed)
    }

    fn encode(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(
            1 + 64 + 16 + 4 + self.username.len() + self.link_token.len(),
        ));
        out.push(PROVISION_VERSION);
        out.extend_from_slice(&self.ik_secret);
        out.extend_from_slice(&self.sig_seed);
        out.extend_from_slice(&self.user_id);
        for s in [&self.username, &self.link_token] {
            out.extend_from_slice(&(s.len() as u16).to_be_bytes());
            out.extend_from_slice(s.as_bytes());
        }
        out
    }

    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let version = r.u8()?;
        if version != PROVISION_VERSION {
            return Err(DecodeError::UnsupportedVersion(version));
        }
        let ik_secret = Zeroizing::new(r.array::<32>()?);
        let sig_seed = Zeroizing::new(r.array::<32>()?);
        let user_id = r.array()?;
        let mut text = |field| -> Result<String, DecodeError> {
            let n = usize::from(r.u16()?);
            if n > MAX_FIELD_BYTES {
                return Err(DecodeError::InvalidField(field));
            }
            String::from_utf8(r.take(n)?.to_vec()).map_err(|_| DecodeError::InvalidField(field))
        };
        let username = text("username")?;
        let link_token = text("link_token")?;
        r.finish()?;
        Ok(Self {
            ik_secret: *ik_secret,
            sig_seed: *sig_seed,
            user_id,
            username,
            link_token,
        })
    }
}

impl std::fmt::Debug for ProvisionContents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProvisionContents")
            .field("identity", &self.identity().public())
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

fn cipher(
    shared: &[u8; 32],
    address: &str,
    eph: &PublicKey,
    device: &PublicKey,
) -> XSalsa20Poly1305 {
    let mut info = PROVISION_INFO.to_vec();
    info.extend_from_slice(&(address.len() as u16).to_be_bytes());
    info.extend_from_slice(address.as_bytes());
    info.extend_from_slice(eph.as_bytes());
    info.extend_from_slice(device.as_bytes());
    let mut key = Zeroizing::new([0u8; 32]);
    // 32 bytes is far below HKDF-SHA256's limit.
    Hkdf::<Sha256>::new(Some(&[0u8; 32]), shared)
        .expand(&info, key.as_mut())
        .unwrap_or_else(|_| unreachable!());
    XSalsa20Poly1305::new(key.as_ref().into())
}

/// Seals `contents` to the device that showed `code` (the linked device's
/// side).
pub fn seal(
    rng: &mut impl CryptoRngCore,
    code: &LinkCode,
    contents: &ProvisionContents,
) -> Result<Vec<u8>, ProvisionError> {
    let eph = KeyPair::generate(rng);
    let shared = eph
        .dh(&code.key)
        .map_err(|_| ProvisionError::NonContributory)?;
    let mut nonce = [0u8; 24];
    rng.fill_bytes(&mut nonce);
    let ct = cipher(&shared, &code.address, &eph.public(), &code.key)
        .encrypt((&nonce).into(), contents.encode().as_slice())
        .map_err(|_| ProvisionError::Decrypt)?;
    let mut out = Vec::with_capacity(1 + 32 + 24 + ct.len());
    out.push(PROVISION_VERSION);
    out.extend_from_slice(eph.public().as_bytes());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    Ok(out)
}

/// Opens a sealed message sent to `address` (the new device's side). Fails
/// with [`ProvisionError::Decrypt`] for anyone but the holder of `keys`, or
/// if the message was meant for another address or was changed.
pub fn open(
    keys: &ProvisioningKeys,
    address: &str,
    sealed: &[u8],
) -> Result<ProvisionContents, ProvisionError> {
    let mut r = Reader::new(sealed);
    let version = r.u8()?;
    if version != PROVISION_VERSION {
        return Err(DecodeError::UnsupportedVersion(version).into());
    }
    let eph = PublicKey::from_wire(r.array()?).map_err(|_| ProvisionError::NonContributory)?;
    let nonce: [u8; 24] = r.array()?;
    let ct = r.rest();
    let shared = keys
        .pair
        .dh(&eph)
        .map_err(|_| ProvisionError::NonContributory)?;
    let plain = Zeroizing::new(
        cipher(&shared, address, &eph, &keys.public())
            .decrypt((&nonce).into(), ct)
            .map_err(|_| ProvisionError::Decrypt)?,
    );
    Ok(ProvisionContents::decode(&plain)?)
}
