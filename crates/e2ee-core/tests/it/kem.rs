//! ML-KEM-1024 against published known answers: the IETF LAMPS example key
//! (seed to encapsulation key, FIPS 203 key generation) and NIST's ACVP
//! encapsulation vector; then decapsulation and implicit rejection.

use e2ee_core::pq::{KEM_CIPHERTEXT_LENGTH, KemCiphertext, KemKeyPair, KemPublicKey};

#[test]
fn the_ietf_example_seed_gives_its_published_key() {
    let v: serde_json::Value =
        serde_json::from_str(include_str!("../data/mlkem1024-ietf-example.json")).unwrap();
    let seed: [u8; 64] = hex::decode(v["seed"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let ek = hex::decode(v["ek"].as_str().unwrap()).unwrap();
    let kp = KemKeyPair::from_seed(&seed);
    assert_eq!(kp.public().as_bytes().as_slice(), ek.as_slice());
    assert_eq!(KemPublicKey::from_bytes(&ek).unwrap(), *kp.public());
}

/// NIST's ACVP vector (FIPS 203, ML-KEM-1024 encapsulation, tcId 52):
/// the published key and message give the published ciphertext and secret.
#[test]
fn the_nist_acvp_encapsulation_vector_gives_its_ciphertext_and_secret() {
    let v: serde_json::Value =
        serde_json::from_str(include_str!("../data/mlkem1024-acvp-encap.json")).unwrap();
    let hex = |k: &str| hex::decode(v[k].as_str().unwrap()).unwrap();
    let ek = KemPublicKey::from_bytes(&hex("ek")).unwrap();
    let m: [u8; 32] = hex("m").try_into().unwrap();
    let (ct, k) = ek.encapsulate_with(&m).unwrap();
    assert_eq!(ct.as_bytes().as_slice(), hex("c").as_slice());
    assert_eq!(k.as_slice(), hex("k").as_slice());
}

/// Ours from seeds: decapsulation finds the secret; any other ciphertext
/// gives another secret (implicit rejection), never an error or panic.
#[test]
fn decapsulation_recovers_the_secret_and_rejects_implicitly() {
    let kp = KemKeyPair::from_seed(&[3u8; 64]);
    let (ct, k) = kp.public().encapsulate_with(&[9u8; 32]).unwrap();
    assert_eq!(*kp.decapsulate(&ct), *k);
    let mut bad = *ct.as_bytes();
    bad[100] ^= 1;
    let other = kp.decapsulate(&KemCiphertext::from_bytes(&bad).unwrap());
    assert_ne!(*other, *k);
    assert_eq!(bad.len(), KEM_CIPHERTEXT_LENGTH);
}

#[test]
fn keys_and_ciphertexts_of_the_wrong_length_or_form_are_refused() {
    assert!(KemPublicKey::from_bytes(&[0u8; 1567]).is_err());
    assert!(KemCiphertext::from_bytes(&[0u8; 1569]).is_err());
    // A coefficient of 0xFFF (>= q = 3329) fails FIPS 203's modulus check.
    let mut ek = *KemKeyPair::from_seed(&[7u8; 64]).public().as_bytes();
    ek[0] = 0xFF;
    ek[1] |= 0x0F;
    assert_eq!(
        KemPublicKey::from_bytes(&ek),
        Err(e2ee_core::KeyError::InvalidKemKey)
    );
}
