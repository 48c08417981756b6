//! Linking a device: the sealed provisioning message opens only for the
//! device that showed the code, at the address it showed.

use e2ee_core::provision::{self, LinkCode, ProvisionContents, ProvisioningKeys};
use e2ee_core::{IdentityKeyPair, ProvisionError};
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;

fn setup() -> (ChaCha20Rng, IdentityKeyPair, ProvisioningKeys, LinkCode) {
    let mut rng = ChaCha20Rng::seed_from_u64(8);
    let identity = IdentityKeyPair::generate(&mut rng);
    let keys = ProvisioningKeys::generate(&mut rng);
    let code = keys.code("3b1f0e6c-5d4a-4c1e-9d7f-2a6b8c0e1f23").unwrap();
    (rng, identity, keys, code)
}

#[test]
fn the_new_device_opens_what_the_linked_one_sealed() {
    let (mut rng, identity, keys, code) = setup();
    let text = code.to_text();
    assert!(text.starts_with("e2ee-link:2:3b1f0e6c-"));
    let scanned = LinkCode::from_text(&format!("  {text}\n")).unwrap();
    assert_eq!(scanned, code);

    let contents = ProvisionContents::new(&identity, [9; 16], "alice", "tok-123").unwrap();
    let sealed = provision::seal(&mut rng, &scanned, &contents).unwrap();
    let opened = provision::open(&keys, code.address(), &sealed).unwrap();
    assert_eq!(opened.identity().public(), identity.public());
    assert_eq!(
        opened.identity().to_secret_bytes(),
        identity.to_secret_bytes()
    );
    assert_eq!(opened.user_id, [9; 16]);
    assert_eq!(opened.username, "alice");
    assert_eq!(opened.link_token, "tok-123");
    // Debug shows no secret.
    let shown = format!("{opened:?}");
    assert!(!shown.contains("tok-123"), "{shown}");
}

#[test]
fn anyone_else_or_another_address_or_a_changed_byte_fails() {
    let (mut rng, identity, keys, code) = setup();
    let contents = ProvisionContents::new(&identity, [9; 16], "alice", "tok").unwrap();
    let sealed = provision::seal(&mut rng, &code, &contents).unwrap();

    let eavesdropper = ProvisioningKeys::generate(&mut rng);
    assert_eq!(
        provision::open(&eavesdropper, code.address(), &sealed).unwrap_err(),
        ProvisionError::Decrypt
    );
    // The server forwards it to another provisioning socket.
    assert_eq!(
        provision::open(&keys, "another-address", &sealed).unwrap_err(),
        ProvisionError::Decrypt
    );
    for i in [1, 40, sealed.len() - 1] {
        let mut bad = sealed.clone();
        bad[i] ^= 1;
        assert!(
            provision::open(&keys, code.address(), &bad).is_err(),
            "byte {i}"
        );
    }
    assert!(provision::open(&keys, code.address(), &sealed[..20]).is_err());
    assert!(provision::open(&keys, code.address(), &[]).is_err());
}

#[test]
fn malformed_codes_are_typed_errors() {
    let (_, _, keys, code) = setup();
    let text = code.to_text();
    for bad in [
        "",
        "e2ee-link:1:abc:AAAA",
        "e2ee-link:2:",
        "e2ee-link:2::AAAA",
        &text[..text.len() - 2],
        &text.replace("e2ee-link:2:", "e2ee-link:2:a b"),
    ] {
        assert_eq!(
            LinkCode::from_text(bad),
            Err(ProvisionError::MalformedCode),
            "{bad:?}"
        );
    }
    // A code carrying the all-zero key (a low-order point) cannot be
    // sealed to: the linked device refuses rather than leak the identity.
    let zero = LinkCode::from_text(&format!("e2ee-link:2:addr:{}", "A".repeat(43))).unwrap();
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let identity = IdentityKeyPair::generate(&mut rng);
    let contents = ProvisionContents::new(&identity, [1; 16], "a", "t").unwrap();
    assert_eq!(
        provision::seal(&mut rng, &zero, &contents).unwrap_err(),
        ProvisionError::NonContributory
    );
    assert!(keys.code("has:colon").is_err());
    assert!(keys.code(&"a".repeat(300)).is_err());
}
