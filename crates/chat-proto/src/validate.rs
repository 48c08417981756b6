//! Validation rules shared by client and server, with one typed error each.

use thiserror::Error;

/// Shortest username, in characters.
pub const USERNAME_MIN: usize = 3;
/// Longest username, in characters.
pub const USERNAME_MAX: usize = 100;
/// Shortest password, in characters.
pub const PASSWORD_MIN: usize = 6;
/// Longest password, in bytes: Argon2 hashes whatever it is given, so an
/// unbounded password is a denial-of-service lever.
pub const PASSWORD_MAX_BYTES: usize = 1024;
/// Longest group name, in characters.
pub const GROUP_NAME_MAX: usize = 100;
/// Longest group description, in characters.
pub const GROUP_DESCRIPTION_MAX: usize = 1000;
/// Longest `content` of one message frame, in bytes (an `E2EE:` envelope in
/// base64). Attachments go through the media endpoint, not here.
pub const MESSAGE_CONTENT_MAX: usize = 64 * 1024;
/// The most devices an account may have at once (a server may allow
/// fewer, `max_devices`, never more).
pub const DEVICES_MAX: usize = 6;
/// The most copies a direct message needs: every device of the recipient
/// and the sender's other devices, both accounts at [`DEVICES_MAX`].
pub const DIRECT_COPIES_MAX: usize = 2 * DEVICES_MAX - 1;
/// What one copy adds to a frame besides its `content`, at most (its JSON
/// keys, user id, device id and registration id).
pub const COPY_OVERHEAD_MAX: usize = 256;
/// Longest WebSocket frame the server reads, in bytes: a direct message of
/// [`DIRECT_COPIES_MAX`] copies of [`MESSAGE_CONTENT_MAX`] each, and 4 KiB
/// for the rest of the frame (727,808 bytes). So a message of the
/// documented size limit always fits, whatever the devices.
pub const FRAME_MAX: usize = DIRECT_COPIES_MAX * (MESSAGE_CONTENT_MAX + COPY_OVERHEAD_MAX) + 4096;
/// Longest JSON request body, in bytes (a prekey upload of 100 keys is ~12 KiB).
pub const JSON_BODY_MAX: usize = 256 * 1024;
/// Most one-time prekeys in one upload.
pub const PREKEYS_PER_UPLOAD_MAX: usize = 200;
/// Most one-time PQ prekeys in one upload.
pub const PQ_PREKEYS_PER_UPLOAD_MAX: usize = 100;
/// Length of an ML-KEM-1024 encapsulation key (a PQ prekey).
pub const KEM_PUBLIC_LENGTH: usize = 1568;
/// Largest `POST /api/users/prekeys` body: 200 X25519 and 100 PQ prekeys
/// (239,476 bytes of JSON, measured) with room to spare.
pub const PREKEY_UPLOAD_BODY_MAX: usize = 512 * 1024;
/// Most message ids in one `read`, `delivered` or status batch.
pub const IDS_PER_BATCH_MAX: usize = 1000;
/// Longest `messageType` label.
pub const MESSAGE_TYPE_MAX: usize = 32;

/// A request field broke a rule.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ValidationError {
    /// The username is too short or too long.
    #[error("username must be {USERNAME_MIN} to {USERNAME_MAX} characters")]
    UsernameLength,
    /// The username has whitespace or control characters.
    #[error("username may not contain spaces or control characters")]
    UsernameCharacters,
    /// The password is too short.
    #[error("password must be at least {PASSWORD_MIN} characters")]
    PasswordTooShort,
    /// The password is too long.
    #[error("password must be at most {PASSWORD_MAX_BYTES} bytes")]
    PasswordTooLong,
    /// An id is not a UUID.
    #[error("{0} is not a valid id")]
    InvalidId(&'static str),
    /// A text field is empty or too long.
    #[error("{field} must be 1 to {max} characters")]
    Length {
        /// Which field.
        field: &'static str,
        /// Its maximum.
        max: usize,
    },
    /// A batch has too many entries.
    #[error("at most {max} entries in {field}")]
    TooMany {
        /// Which field.
        field: &'static str,
        /// Its maximum.
        max: usize,
    },
    /// A key or signature is not valid base64 of the right length.
    #[error("{0} must be base64 of the right length")]
    InvalidKey(&'static str),
    /// Message content is not an `E2EE:` envelope.
    #[error("content must be an E2EE: envelope")]
    NotAnEnvelope,
    /// A text field holds a NUL or another control character (a line
    /// break or tab is allowed only in longer text, such as a group's
    /// description).
    #[error("{0} may not contain control characters (such as NUL)")]
    ControlCharacters(&'static str),
}

/// Checks the username rules: 3 to 100 characters, no whitespace or control
/// characters.
pub fn username(name: &str) -> Result<(), ValidationError> {
    let n = name.chars().count();
    if !(USERNAME_MIN..=USERNAME_MAX).contains(&n) {
        return Err(ValidationError::UsernameLength);
    }
    if name
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || invisible(c))
    {
        return Err(ValidationError::UsernameCharacters);
    }
    Ok(())
}

/// Characters that show as nothing or change the direction of what
/// follows: zero-width and joiners, bidi embeddings, overrides and
/// isolates, word joiners and invisible operators, the BOM, the soft hyphen,
/// the Mongolian vowel separator and the Hangul fillers. A name with one
/// could pass for another on screen.
fn invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00ad}'
            | '\u{034f}'
            | '\u{061c}'
            | '\u{115f}'
            | '\u{1160}'
            | '\u{17b4}'
            | '\u{17b5}'
            | '\u{180b}'..='\u{180f}'
            | '\u{200b}'..='\u{200f}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2060}'..='\u{206f}'
            | '\u{3164}'
            | '\u{fe00}'..='\u{fe0f}'
            | '\u{feff}'
            | '\u{ffa0}'
    )
}

/// The form two usernames are compared in: NFKC_Casefold (normalise
/// compatibility forms, fold case fully, normalise again), so `Ωmega`,
/// `ωmega` and `ΩMEGA`, or `ﬁsh` and `FISH`, are one name.
pub fn canonical_username(name: &str) -> String {
    use caseless::Caseless;
    use unicode_normalization::UnicodeNormalization;
    name.nfkc().default_case_fold().nfkc().collect()
}

/// Checks the password rules: at least 6 characters, at most 1024 bytes.
pub fn password(pw: &str) -> Result<(), ValidationError> {
    if pw.chars().count() < PASSWORD_MIN {
        return Err(ValidationError::PasswordTooShort);
    }
    if pw.len() > PASSWORD_MAX_BYTES {
        return Err(ValidationError::PasswordTooLong);
    }
    Ok(())
}

/// Parses a UUID id (any case, hyphenated); `field` names it in the error.
pub fn id(s: &str, field: &'static str) -> Result<uuid::Uuid, ValidationError> {
    uuid::Uuid::try_parse(s).map_err(|_| ValidationError::InvalidId(field))
}

/// Checks a free-text field (a group's description): 1..=max characters,
/// no control characters but line breaks and tabs. One rule for every
/// storage backend (PostgreSQL cannot store NUL in text at all).
pub fn text(s: &str, field: &'static str, max: usize) -> Result<(), ValidationError> {
    length(s, field, max)?;
    if s.chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err(ValidationError::ControlCharacters(field));
    }
    Ok(())
}

/// Checks a name (a device's, a group's, an avatar URL, a fingerprint, a
/// message type): 1..=max characters, no control characters at all.
pub fn name(s: &str, field: &'static str, max: usize) -> Result<(), ValidationError> {
    length(s, field, max)?;
    if s.chars().any(char::is_control) {
        return Err(ValidationError::ControlCharacters(field));
    }
    Ok(())
}

fn length(s: &str, field: &'static str, max: usize) -> Result<(), ValidationError> {
    let n = s.chars().count();
    if n == 0 || n > max {
        return Err(ValidationError::Length { field, max });
    }
    Ok(())
}

/// Checks message content: an `E2EE:` envelope of bounded size. The server
/// never decodes it further; it cannot read it anyway.
pub fn content(s: &str) -> Result<(), ValidationError> {
    if !s.starts_with("E2EE:") || s.len() <= 5 {
        return Err(ValidationError::NotAnEnvelope);
    }
    if s.chars().any(char::is_control) {
        return Err(ValidationError::ControlCharacters("content"));
    }
    if s.len() > MESSAGE_CONTENT_MAX {
        return Err(ValidationError::Length {
            field: "content",
            max: MESSAGE_CONTENT_MAX,
        });
    }
    Ok(())
}

/// Checks a batch of ids: bounded, each a UUID.
pub fn id_batch(ids: &[String], field: &'static str) -> Result<(), ValidationError> {
    if ids.len() > IDS_PER_BATCH_MAX {
        return Err(ValidationError::TooMany {
            field,
            max: IDS_PER_BATCH_MAX,
        });
    }
    for i in ids {
        id(i, field)?;
    }
    Ok(())
}
