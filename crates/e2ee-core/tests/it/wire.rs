//! Decoders (envelopes, headers, payloads) and the safety-number QR payload:
//! round trips and one typed error per kind of malformed input.

use e2ee_core::payload::{pad, unpad};
use e2ee_core::{
    AttachmentPointer, DecodeError, Envelope, Header, IdentityKeyPair, IdentityPublic,
    MessageEnvelope, Payload, PayloadError, PayloadKind, PublicKey, QUOTE_EXCERPT_MAX, Quote,
    SafetyNumber, SyncTarget, fingerprint_grouped,
};

use crate::support::rng;

fn check(input: &[u8], expect: DecodeError) {
    assert_eq!(
        Envelope::from_bytes(input).unwrap_err(),
        expect,
        "{}",
        hex::encode(input)
    );
}

fn message_bytes() -> Vec<u8> {
    Envelope::Message(MessageEnvelope {
        header: Header {
            dh_pub: PublicKey::from_bytes([3u8; 32]),
            pn: 1,
            n: 2,
        },
        body: vec![0xAB; 16 + 64],
    })
    .to_bytes()
}

/// An Ed25519 encoding that is not a curve point, found by search so the
/// test does not depend on one magic constant.
fn invalid_ed25519() -> [u8; 32] {
    (0u8..=255)
        .map(|i| {
            let mut b = [i; 32];
            b[31] &= 0x7f;
            b
        })
        .find(|b| {
            let mut id = [1u8; 64];
            id[32..].copy_from_slice(b);
            IdentityPublic::from_bytes(&id) == Err(e2ee_core::KeyError::InvalidSigningKey)
        })
        .expect("some byte pattern is not an Ed25519 point")
}

#[test]
fn envelope_decoder_errors_are_typed() {
    let msg = message_bytes();
    check(&[], DecodeError::Truncated { needed: 1 });
    check(&[0x00], DecodeError::UnknownKind(0));
    check(&[0x05, 1, 2], DecodeError::UnknownKind(5));
    // A PQXDH PreKey message cut inside its KEM ciphertext.
    let mut pq = vec![0x04];
    pq.extend_from_slice(&[0u8; 64 + 32 + 4 + 4 + 4 + 100]);
    assert!(matches!(
        Envelope::from_bytes(&pq),
        Err(DecodeError::Truncated { .. } | DecodeError::InvalidIdentityKey)
    ));
    check(&[0x01], DecodeError::Truncated { needed: 1 });
    check(&[0x01, 0x02], DecodeError::UnsupportedVersion(2));
    check(&msg[..20], DecodeError::Truncated { needed: 14 });
    check(&msg[..42 + 15], DecodeError::BodyTooShort(15));
    let mut high = msg.clone();
    high[33] |= 0x80; // last byte of dh_pub
    check(&high, DecodeError::NonCanonicalKey);
    // PreKey with a bad identity key, a non-canonical base key, a bad inner kind.
    let mut pk = vec![0x02];
    let mut id = [1u8; 64];
    id[32..].copy_from_slice(&invalid_ed25519());
    pk.extend_from_slice(&id);
    pk.extend_from_slice(&[5u8; 32 + 8]);
    pk.extend_from_slice(&msg);
    check(&pk, DecodeError::InvalidIdentityKey);
    check(&[0x02; 40], DecodeError::Truncated { needed: 25 });
    // Sender-key envelope too short for a tag and signature.
    let mut sk = vec![0x03];
    sk.extend_from_slice(&[0u8; 24 + 64 + 15]);
    check(&sk, DecodeError::BodyTooShort(15));
}

#[test]
fn envelopes_round_trip_in_binary_and_text() {
    let mut r = rng(1);
    let id = IdentityKeyPair::generate(&mut r);
    let m = MessageEnvelope {
        header: Header {
            dh_pub: PublicKey::from_bytes([3u8; 32]),
            pn: 7,
            n: 0xFFFF_FFFE,
        },
        body: vec![1; 40],
    };
    let all = [
        Envelope::Message(m.clone()),
        Envelope::PreKey(e2ee_core::PreKeyEnvelope {
            pq: None,
            identity: id.public(),
            base_key: PublicKey::from_bytes([4u8; 32]),
            signed_prekey_id: 3,
            one_time_prekey_id: None,
            message: m.clone(),
        }),
        Envelope::PreKey(e2ee_core::PreKeyEnvelope {
            pq: None,
            identity: id.public(),
            base_key: PublicKey::from_bytes([4u8; 32]),
            signed_prekey_id: 3,
            one_time_prekey_id: Some(0),
            message: m,
        }),
        Envelope::SenderKey(e2ee_core::SenderKeyEnvelope {
            group_id: [9; 16],
            chain_id: 1,
            iteration: 2,
            body: vec![5; 16],
            signature: [6; 64],
        }),
    ];
    for env in all {
        assert_eq!(Envelope::from_bytes(&env.to_bytes()).unwrap(), env);
        let text = env.to_text();
        assert!(text.starts_with("E2EE:"));
        assert_eq!(Envelope::from_text(&text).unwrap(), env);
    }
    assert_eq!(
        Envelope::from_text("AQID").unwrap_err(),
        DecodeError::MissingPrefix
    );
    assert_eq!(
        Envelope::from_text("E2EE:@@").unwrap_err(),
        DecodeError::InvalidBase64
    );
}

#[test]
fn header_is_41_bytes_and_round_trips() {
    let h = Header {
        dh_pub: PublicKey::from_bytes([8u8; 32]),
        pn: 0x01020304,
        n: 0x05060708,
    };
    let b = h.to_bytes();
    assert_eq!(b.len(), 41);
    assert_eq!(b[0], 1);
    assert_eq!(&b[33..], &[1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(Header::from_bytes(&b).unwrap(), h);
    assert_eq!(
        Header::from_bytes(&[b.as_slice(), &[0]].concat()).unwrap_err(),
        DecodeError::TrailingBytes(1)
    );
}

#[test]
fn non_canonical_x25519_keys_are_refused() {
    let mut p = [0xffu8; 32];
    p[31] = 0x7f;
    p[0] = 0xed; // exactly 2^255 - 19
    assert!(PublicKey::from_wire(p).is_err());
    p[0] = 0xec; // p - 1: canonical
    assert!(PublicKey::from_wire(p).is_ok());
    let mut high = [0u8; 32];
    high[31] = 0x80;
    assert!(PublicKey::from_wire(high).is_err());
}

#[test]
fn padding_hides_length_within_64_byte_classes() {
    for len in [0usize, 1, 63, 64, 65, 127, 128, 1000] {
        let data = vec![0x11; len];
        let padded = pad(&data);
        assert_eq!(padded.len() % 64, 0, "{len}");
        assert!(padded.len() > len);
        assert_eq!(unpad(&padded).unwrap(), data.as_slice());
    }
    // Trailing zero bytes in the data survive, the marker is what counts.
    assert_eq!(unpad(&pad(&[0, 0, 0])).unwrap(), &[0, 0, 0]);
    for bad in [
        vec![],
        vec![0u8; 64],
        vec![0x80; 63],
        [vec![1u8; 64], vec![0; 64]].concat(),
    ] {
        assert_eq!(unpad(&bad).unwrap_err(), PayloadError::InvalidPadding);
    }
    let mut no_marker = vec![0x11; 10];
    no_marker.resize(64, 0);
    assert_eq!(unpad(&no_marker).unwrap_err(), PayloadError::InvalidPadding);
}

fn attachment() -> AttachmentPointer {
    AttachmentPointer {
        media_id: "7f1d2b9e-0000-4000-8000-00000000a11c".into(),
        key: [1; 32],
        nonce: [2; 24],
        sha256: [3; 32],
        size: 123_456,
        mime_type: "image/png".into(),
        file_name: "cat.png".into(),
    }
}

#[test]
fn payloads_of_every_kind_round_trip() {
    let id = [0x5a; 16];
    let mut cases = vec![Payload::text(id, 1_700_000_000_000, "héllo")];
    for kind in [PayloadKind::Image, PayloadKind::File] {
        cases.push(Payload {
            kind,
            attachment: Some(attachment()),
            ..Payload::text(id, 1, "caption")
        });
    }
    for kind in [
        PayloadKind::Reaction,
        PayloadKind::Edit,
        PayloadKind::Delete,
        PayloadKind::Reply,
    ] {
        cases.push(Payload {
            kind,
            reference: Some([0x77; 16]),
            ..Payload::text(id, 2, "👍")
        });
    }
    cases.push(Payload {
        kind: PayloadKind::SenderKey,
        body: vec![0; 89].into(),
        ..Payload::text(id, 3, "")
    });
    cases.push(Payload {
        kind: PayloadKind::Unknown(200),
        ..Payload::text(id, 4, "from the future")
    });
    // Version 2: sent transcripts for our other devices, with a reply's
    // reference and an attachment beside them, and read marks.
    cases.push(Payload {
        sync: Some(SyncTarget::Direct(
            "9c8b7a6d-0000-4000-8000-000000000001".into(),
        )),
        reference: Some([0x11; 16]),
        ..Payload::text(id, 5, "to bob, from my phone")
    });
    cases.push(Payload {
        kind: PayloadKind::Image,
        attachment: Some(attachment()),
        sync: Some(SyncTarget::Group([0x42; 16])),
        quote: None,
        expire_secs: None,
        ..Payload::text(id, 6, "")
    });
    cases.push(Payload {
        kind: PayloadKind::ReadSync,
        body: [[1u8; 16], [2u8; 16]].concat().into(),
        ..Payload::text(id, 7, "")
    });
    // Version 2.1: a quoted reply with a timer, a timer change, and a
    // delete for our own devices.
    cases.push(Payload {
        kind: PayloadKind::Reply,
        reference: Some([0x33; 16]),
        quote: Some(Quote::new("alice-id", "what the original said")),
        expire_secs: Some(3600),
        ..Payload::text(id, 8, "a reply")
    });
    cases.push(Payload {
        kind: PayloadKind::Timer,
        body: 86_400u32.to_be_bytes().to_vec().into(),
        ..Payload::text(id, 9, "")
    });
    cases.push(Payload {
        kind: PayloadKind::LocalDelete,
        body: [3u8; 16].to_vec().into(),
        ..Payload::text(id, 10, "")
    });
    for p in cases {
        let padded = p.to_padded().unwrap();
        assert_eq!(padded.len() % 64, 0);
        assert_eq!(Payload::decode_checked(&padded, &id).unwrap(), p);
    }
}

#[test]
fn payload_errors_are_typed() {
    let id = [1u8; 16];
    let p = Payload::text(id, 5, "x");
    let enc = p.encode().unwrap();
    assert_eq!(
        Payload::decode_checked(&pad(&enc), &[2u8; 16]).unwrap_err(),
        PayloadError::IdMismatch
    );
    let mut v = enc.clone();
    v[0] = 2;
    assert_eq!(
        Payload::decode(&v).unwrap_err(),
        PayloadError::Decode(DecodeError::UnsupportedVersion(2))
    );
    // A sync target of an unknown kind.
    let mut sync = Payload {
        sync: Some(SyncTarget::Group([0; 16])),
        quote: None,
        expire_secs: None,
        ..p.clone()
    }
    .encode()
    .unwrap();
    let at = sync.len() - 17;
    sync[at] = 3;
    assert_eq!(
        Payload::decode(&sync).unwrap_err(),
        PayloadError::Decode(DecodeError::InvalidField("sync"))
    );
    // A quote excerpt over the bound is refused both ways; a quote is cut
    // on a character boundary; a zero timer is malformed.
    let long = Quote {
        sender: "a".into(),
        excerpt: "x".repeat(QUOTE_EXCERPT_MAX + 1),
    };
    let quoted = Payload {
        quote: Some(long.clone()),
        ..p.clone()
    };
    assert_eq!(
        quoted.encode().unwrap_err(),
        PayloadError::TooLong("quote excerpt")
    );
    let cut = Quote::new("a", &"é".repeat(QUOTE_EXCERPT_MAX));
    assert_eq!(cut.excerpt.len(), QUOTE_EXCERPT_MAX);
    let mut over = Payload {
        quote: Some(Quote::new("a", "")),
        ..p.clone()
    }
    .encode()
    .unwrap()
    .to_vec();
    over.truncate(over.len() - 2);
    over.extend_from_slice(&((QUOTE_EXCERPT_MAX + 1) as u16).to_be_bytes());
    over.extend_from_slice(long.excerpt.as_bytes());
    assert_eq!(
        Payload::decode(&over).unwrap_err(),
        PayloadError::Decode(DecodeError::InvalidField("quote excerpt"))
    );
    let mut zero = Payload {
        expire_secs: Some(5),
        ..p.clone()
    }
    .encode()
    .unwrap()
    .to_vec();
    let n = zero.len();
    zero[n - 4..].copy_from_slice(&[0; 4]);
    assert_eq!(
        Payload::decode(&zero).unwrap_err(),
        PayloadError::Decode(DecodeError::InvalidField("expire_secs"))
    );
    let mut flags = enc.clone();
    flags[26] = 0x80;
    assert_eq!(
        Payload::decode(&flags).unwrap_err(),
        PayloadError::Decode(DecodeError::InvalidField("flags"))
    );
    assert!(matches!(
        Payload::decode(&enc[..enc.len() - 1]).unwrap_err(),
        PayloadError::Decode(DecodeError::Truncated { .. })
    ));
    let mut bad_utf8 = Payload {
        kind: PayloadKind::File,
        attachment: Some(attachment()),
        ..p.clone()
    }
    .encode()
    .unwrap();
    let n = bad_utf8.len();
    bad_utf8[n - 1] = 0xff; // last byte of the file name
    assert_eq!(
        Payload::decode(&bad_utf8).unwrap_err(),
        PayloadError::InvalidUtf8("file_name")
    );
    let mut long_name = attachment();
    long_name.file_name = "x".repeat(70_000);
    let long = Payload {
        attachment: Some(long_name),
        ..p
    };
    assert_eq!(
        long.encode().unwrap_err(),
        PayloadError::TooLong("file_name")
    );
    assert!(!format!("{:?}", attachment()).contains("1, 1, 1"));
}

#[test]
fn safety_numbers_agree_differ_and_scan() {
    let mut r = rng(2);
    let a = IdentityKeyPair::generate(&mut r).public();
    let b = IdentityKeyPair::generate(&mut r).public();
    let c = IdentityKeyPair::generate(&mut r).public();
    let ab = SafetyNumber::new(&a, "alice", &b, "bob");
    let ba = SafetyNumber::new(&b, "bob", &a, "alice");
    assert_eq!(ab.digits(), ba.digits());
    assert_eq!(ab.digits().len(), 60);
    assert!(ab.digits().bytes().all(|d| d.is_ascii_digit()));
    assert_eq!(ab.display().split(' ').count(), 12);
    assert_eq!(ba.matches_scanned(&ab.qr_payload()), Ok(true));
    // A man in the middle: Bob sees Mallory's key where Alice's should be.
    let bc = SafetyNumber::new(&b, "bob", &c, "alice");
    assert_ne!(bc.digits(), ab.digits());
    assert_eq!(bc.matches_scanned(&ab.qr_payload()), Ok(false));
    // Scanning your own code is not a match.
    assert_eq!(ab.matches_scanned(&ab.qr_payload()), Ok(false));
    assert!(ab.matches_scanned(&[1u8; 10]).is_err());
    let mut wrong_version = ab.qr_payload();
    wrong_version[0] = 2;
    assert!(ab.matches_scanned(&wrong_version).is_err());
    let fp = fingerprint_grouped(&a);
    assert_eq!(fp.len(), 64 + 15);
}

#[test]
fn debug_never_prints_a_payload_body_or_a_plaintext() {
    // A sender-key distribution's body holds the chain key.
    let secret = [0xC7u8; 89];
    let p = Payload {
        kind: PayloadKind::SenderKey,
        body: secret.to_vec().into(),
        ..Payload::text([1; 16], 3, "")
    };
    let shown = format!("{p:?}");
    assert!(shown.contains("body_len: 89"), "{shown}");
    assert!(
        !shown.contains("199"),
        "the bytes (0xC7 = 199) leak: {shown}"
    );
    let text = format!("{:?}", Payload::text([1; 16], 3, "the secret words"));
    assert!(!text.contains("115, 101, 99"), "{text}");
}

#[test]
fn the_worked_payload_examples_in_the_protocol_document() {
    let ts = 1_700_000_000_000;
    let reaction = Payload {
        kind: PayloadKind::Reaction,
        reference: Some([0x22; 16]),
        ..Payload::text([0x11; 16], ts, "👍")
    };
    let reply = Payload {
        kind: PayloadKind::Reply,
        reference: Some([0x11; 16]),
        quote: Some(Quote::new("a", "hi")),
        expire_secs: Some(3600),
        ..Payload::text([0x33; 16], ts, "ok")
    };
    let timer = Payload {
        kind: PayloadKind::Timer,
        body: 86_400u32.to_be_bytes().to_vec().into(),
        ..Payload::text([0x44; 16], ts, "")
    };
    let hex = |p: &Payload| {
        p.encode()
            .unwrap()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    assert_eq!(
        hex(&reaction),
        "0105111111111111111111111111111111110000018bcfe568000200000004f09f918d22222222222222222222222222222222"
    );
    assert_eq!(
        hex(&reply),
        "0108333333333333333333333333333333330000018bcfe568001a000000026f6b111111111111111111111111111111110001610002686900000e10"
    );
    assert_eq!(
        hex(&timer),
        "010b444444444444444444444444444444440000018bcfe56800000000000400015180"
    );
}
