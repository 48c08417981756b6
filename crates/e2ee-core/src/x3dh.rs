//! X3DH key agreement (DESIGN.md section 2, "X3DH").
//!
//! ```text
//! DH1 = DH(IK_A, SPK_B)  DH2 = DH(EK_A, IK_B)  DH3 = DH(EK_A, SPK_B)  DH4 = DH(EK_A, OPK_B)
//! SK  = HKDF(salt = 0^32, ikm = 0xFF^32 || DH1 || DH2 || DH3 [|| DH4], info = "E2EEChat X3DH v1")
//! PQXDH (version 2): (CT, SS) = ML-KEM-1024.Encaps(PQPK_B), and
//! SK  = HKDF(salt = 0^32, ikm = 0xFF^32 || DH1 || DH2 || DH3 [|| DH4] || SS,
//!            info = "E2EEChat PQXDH X25519 ML-KEM-1024 v2")
//! AD  = IDPUB_A || IDPUB_B
//! ```

use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::error::KeyError;
use crate::keys::{IdentityKeyPair, IdentityPublic, KeyPair, PublicKey};

/// HKDF info for the X3DH shared secret.
pub const X3DH_INFO: &[u8] = b"E2EEChat X3DH v1";
/// HKDF info for the PQXDH shared secret (protocol version 2).
pub const PQXDH_INFO: &[u8] = b"E2EEChat PQXDH X25519 ML-KEM-1024 v2";

/// The associated data both sides bind every message to: `IDPUB_A || IDPUB_B`.
pub type AssociatedData = [u8; 128];

/// Builds `AD = IDPUB_initiator || IDPUB_responder`.
pub fn associated_data(initiator: &IdentityPublic, responder: &IdentityPublic) -> AssociatedData {
    let mut ad = [0u8; 128];
    ad[..64].copy_from_slice(&initiator.to_bytes());
    ad[64..].copy_from_slice(&responder.to_bytes());
    ad
}

/// `HKDF(0^32, 0xFF^32 || DH1 || DH2 || DH3 [|| DH4] [|| SS], info)`:
/// X3DH without `SS`, PQXDH with it (and its own info).
fn derive(dhs: &[&[u8; 32]], ss: Option<&[u8; 32]>) -> Zeroizing<[u8; 32]> {
    let mut ikm = Zeroizing::new(Vec::with_capacity(32 * 6));
    ikm.extend_from_slice(&[0xFF; 32]);
    for dh in dhs {
        ikm.extend_from_slice(&dh[..]);
    }
    let info = match ss {
        Some(ss) => {
            ikm.extend_from_slice(ss);
            PQXDH_INFO
        }
        None => X3DH_INFO,
    };
    let hk = Hkdf::<Sha256>::new(Some(&[0u8; 32]), &ikm);
    let mut sk = Zeroizing::new([0u8; 32]);
    // 32 bytes is far below HKDF-SHA256's limit.
    hk.expand(info, sk.as_mut())
        .unwrap_or_else(|_| unreachable!());
    sk
}

/// The initiator's `SK` (PQXDH when `ss`, the KEM secret, is given). The
/// caller has verified the bundle's signatures.
pub(crate) fn initiator_secret(
    identity: &IdentityKeyPair,
    ephemeral: &KeyPair,
    their_identity: &PublicKey,
    their_signed_prekey: &PublicKey,
    their_one_time_prekey: Option<&PublicKey>,
    ss: Option<&[u8; 32]>,
) -> Result<Zeroizing<[u8; 32]>, KeyError> {
    let dh1 = identity.dh_pair().dh(their_signed_prekey)?;
    let dh2 = ephemeral.dh(their_identity)?;
    let dh3 = ephemeral.dh(their_signed_prekey)?;
    match their_one_time_prekey {
        Some(opk) => {
            let dh4 = ephemeral.dh(opk)?;
            Ok(derive(&[&dh1, &dh2, &dh3, &dh4], ss))
        }
        None => Ok(derive(&[&dh1, &dh2, &dh3], ss)),
    }
}

/// The responder's `SK`, from its own keys and the initiator's public ones
/// (PQXDH when `ss`, the decapsulated KEM secret, is given).
pub(crate) fn responder_secret(
    identity: &IdentityKeyPair,
    signed_prekey: &KeyPair,
    one_time_prekey: Option<&KeyPair>,
    their_identity: &PublicKey,
    their_ephemeral: &PublicKey,
    ss: Option<&[u8; 32]>,
) -> Result<Zeroizing<[u8; 32]>, KeyError> {
    let dh1 = signed_prekey.dh(their_identity)?;
    let dh2 = identity.dh_pair().dh(their_ephemeral)?;
    let dh3 = signed_prekey.dh(their_ephemeral)?;
    match one_time_prekey {
        Some(opk) => {
            let dh4 = opk.dh(their_ephemeral)?;
            Ok(derive(&[&dh1, &dh2, &dh3, &dh4], ss))
        }
        None => Ok(derive(&[&dh1, &dh2, &dh3], ss)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex32(v: &serde_json::Value) -> [u8; 32] {
        hex::decode(v.as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap()
    }

    /// `SK` with and without the one-time prekey, from both sides, against the
    /// known answers (the scripted conversation covers only the first).
    #[test]
    fn shared_secret_matches_known_answers_both_sides() {
        let v: serde_json::Value =
            serde_json::from_str(include_str!("../tests/data/protocol-v1.json")).unwrap();
        let ids = &v["identities"];
        let alice = IdentityKeyPair::from_secret_bytes(
            hex32(&ids["alice"]["ik_priv"]),
            hex32(&ids["alice"]["sig_seed"]),
        );
        let bob = IdentityKeyPair::from_secret_bytes(
            hex32(&ids["bob"]["ik_priv"]),
            hex32(&ids["bob"]["sig_seed"]),
        );
        let p = &v["bob_prekeys"];
        let spk = KeyPair::from_secret_bytes(hex32(&p["spk_priv"]));
        let opk = KeyPair::from_secret_bytes(hex32(&p["opk_priv"]));
        let ek = KeyPair::from_secret_bytes(hex32(&v["x3dh"]["alice_ek_priv"]));
        let bundle_ik = bob.public().dh_key();

        let with = initiator_secret(
            &alice,
            &ek,
            &bundle_ik,
            &spk.public(),
            Some(&opk.public()),
            None,
        )
        .unwrap();
        let without = initiator_secret(&alice, &ek, &bundle_ik, &spk.public(), None, None).unwrap();
        assert_eq!(*with, hex32(&v["x3dh"]["sk_with_opk"]));
        assert_eq!(*without, hex32(&v["x3dh"]["sk_without_opk"]));

        let a_ik = alice.public().dh_key();
        let r_with = responder_secret(&bob, &spk, Some(&opk), &a_ik, &ek.public(), None).unwrap();
        let r_without = responder_secret(&bob, &spk, None, &a_ik, &ek.public(), None).unwrap();
        assert_eq!(*r_with, *with);
        assert_eq!(*r_without, *without);
    }

    /// PQXDH's `SK` from both sides equals the one `tests/data/own-v2.json`
    /// computed independently (x25519-dalek and hkdf, outside this crate).
    #[test]
    fn pqxdh_secret_matches_the_independent_computation() {
        let v: serde_json::Value =
            serde_json::from_str(include_str!("../tests/data/own-v2.json")).unwrap();
        let id = |who: &str| {
            IdentityKeyPair::from_secret_bytes(
                hex32(&v["identities"][who]["ik_priv"]),
                hex32(&v["identities"][who]["sig_seed"]),
            )
        };
        let (alice, bob) = (id("alice"), id("bob"));
        let p = &v["bob_prekeys"];
        let spk = KeyPair::from_secret_bytes(hex32(&p["spk_priv"]));
        let opk = KeyPair::from_secret_bytes(hex32(&p["opk_priv"]));
        let x = &v["pqxdh"];
        let ek = KeyPair::from_secret_bytes(hex32(&x["alice_ek_priv"]));
        let ss = hex32(&x["ss"]);
        let a = initiator_secret(
            &alice,
            &ek,
            &bob.public().dh_key(),
            &spk.public(),
            Some(&opk.public()),
            Some(&ss),
        )
        .unwrap();
        let b = responder_secret(
            &bob,
            &spk,
            Some(&opk),
            &alice.public().dh_key(),
            &ek.public(),
            Some(&ss),
        )
        .unwrap();
        assert_eq!(*a, hex32(&x["sk"]));
        assert_eq!(*b, *a);
        // And the KEM half of the file: seed, encapsulation key, ct, ss.
        let seed: [u8; 64] = hex::decode(p["pqpk_seed"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        let kp = crate::pq::KemKeyPair::from_seed(&seed);
        assert_eq!(
            hex::encode(kp.public().as_bytes()),
            p["pqpk_ek"].as_str().unwrap()
        );
        let (ct, ss2) = kp.public().encapsulate_with(&hex32(&x["kem_m"])).unwrap();
        assert_eq!(hex::encode(ct.as_bytes()), x["ct"].as_str().unwrap());
        assert_eq!(*ss2, ss);
    }
}
