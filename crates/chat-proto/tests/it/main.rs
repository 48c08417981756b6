//! chat-proto: every frame and body round-trips against the JSON examples in
//! `tests/data/`, and the validation rules hold.

// Test helpers may unwrap: a failure is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chat_proto::rest::*;
use chat_proto::validate::{self, ValidationError};
use chat_proto::ws::{ClientFrame, ServerFrame};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Parses `example` as `T`, serializes it back, and expects the same JSON.
fn round_trip<T: Serialize + DeserializeOwned>(example: &Value) -> T {
    let parsed: T = serde_json::from_value(example.clone())
        .unwrap_or_else(|e| panic!("{example} does not parse: {e}"));
    let back = serde_json::to_value(&parsed).unwrap();
    assert_eq!(&back, example, "round trip changed the JSON");
    parsed
}

#[test]
fn client_frames_round_trip() {
    let frames: Vec<Value> =
        serde_json::from_str(include_str!("../data/client_frames.json")).unwrap();
    assert_eq!(frames.len(), 7);
    for f in &frames {
        round_trip::<ClientFrame>(f);
    }
}

#[test]
fn server_frames_round_trip() {
    let frames: Vec<Value> =
        serde_json::from_str(include_str!("../data/server_frames.json")).unwrap();
    assert_eq!(frames.len(), 15);
    for f in &frames {
        round_trip::<ServerFrame>(f);
    }
}

#[test]
fn rest_bodies_round_trip() {
    let v: Value = serde_json::from_str(include_str!("../data/rest.json")).unwrap();
    let check = |name: &str| {
        v.get(name)
            .unwrap_or_else(|| panic!("no example for {name}"))
    };
    round_trip::<RegisterRequest>(check("RegisterRequest"));
    round_trip::<LoginRequest>(check("LoginRequest"));
    round_trip::<AuthResponse>(check("AuthResponse"));
    round_trip::<UsersResponse>(check("UsersResponse"));
    round_trip::<PreKeyUpload>(check("PreKeyUpload"));
    round_trip::<PreKeyBundle>(check("PreKeyBundle"));
    round_trip::<PreKeyStatus>(check("PreKeyStatus"));
    round_trip::<VerifyKeyRequest>(check("VerifyKeyRequest"));
    round_trip::<VerifyKeyStatus>(check("VerifyKeyStatus"));
    round_trip::<MessagesResponse>(check("MessagesResponse"));
    round_trip::<StatusBatch>(check("StatusBatch"));
    round_trip::<StatusBatchResult>(check("StatusBatchResult"));
    round_trip::<CreateGroupRequest>(check("CreateGroupRequest"));
    round_trip::<UpdateGroupRequest>(check("UpdateGroupRequest"));
    round_trip::<AddMemberRequest>(check("AddMemberRequest"));
    round_trip::<GroupsResponse>(check("GroupsResponse"));
    round_trip::<MediaUploaded>(check("MediaUploaded"));
    round_trip::<Health>(check("Health"));
    round_trip::<ErrorBody>(check("ErrorBody"));
}

#[test]
fn malformed_frames_are_errors_not_panics() {
    for bad in [
        "",
        "{}",
        "[]",
        r#"{"type":"message"}"#,
        r#"{"type":"nope","payload":{}}"#,
        r#"{"type":"message","payload":{"id":1,"to":"x","content":"E2EE:","messageType":"t"}}"#,
        r#"{"type":"delivered","payload":{"messageIds":"x"}}"#,
        r#"{"type":"auth","payload":{"token":"t","userId":"spoof"}}"#,
    ] {
        assert!(serde_json::from_str::<ClientFrame>(bad).is_err(), "{bad}");
    }
}

#[test]
fn username_rules() {
    assert_eq!(
        validate::username("ab"),
        Err(ValidationError::UsernameLength)
    );
    assert_eq!(validate::username("abc"), Ok(()));
    assert_eq!(validate::username(&"x".repeat(100)), Ok(()));
    assert_eq!(
        validate::username(&"x".repeat(101)),
        Err(ValidationError::UsernameLength)
    );
    // Characters, not bytes.
    assert_eq!(validate::username("ñáé"), Ok(()));
    assert_eq!(
        validate::username("a b"),
        Err(ValidationError::UsernameCharacters)
    );
    assert_eq!(
        validate::username("ab\n"),
        Err(ValidationError::UsernameCharacters)
    );
}

#[test]
fn password_rules() {
    assert_eq!(
        validate::password("12345"),
        Err(ValidationError::PasswordTooShort)
    );
    assert_eq!(validate::password("123456"), Ok(()));
    assert_eq!(
        validate::password(&"p".repeat(1025)),
        Err(ValidationError::PasswordTooLong)
    );
}

#[test]
fn ids_content_and_batches() {
    assert!(validate::id("5f0c6d3e-8a5b-4b8e-9c41-1f2d3e4f5a6b", "id").is_ok());
    assert_eq!(
        validate::id("not-a-uuid", "to"),
        Err(ValidationError::InvalidId("to"))
    );
    assert_eq!(
        validate::content("hello"),
        Err(ValidationError::NotAnEnvelope)
    );
    assert_eq!(
        validate::content("E2EE:"),
        Err(ValidationError::NotAnEnvelope)
    );
    assert!(validate::content("E2EE:AQID").is_ok());
    assert!(validate::content(&format!("E2EE:{}", "A".repeat(70_000))).is_err());
    let many = vec!["5f0c6d3e-8a5b-4b8e-9c41-1f2d3e4f5a6b".to_string(); 1001];
    assert!(matches!(
        validate::id_batch(&many, "messageIds"),
        Err(ValidationError::TooMany { .. })
    ));
    assert!(validate::id_batch(&many[..2], "messageIds").is_ok());
    assert_eq!(
        validate::text("", "name", 100),
        Err(ValidationError::Length {
            field: "name",
            max: 100
        })
    );
}
