//! What both backends share: status codes as stored, the check of a
//! version-2 message's copies against the devices they must cover, and the
//! writers' cache of facts that never become false.

use std::collections::{BTreeMap, HashSet};

use chat_proto::MessageStatus;
use chat_proto::ws::{DeviceCopy, DeviceMismatch, DeviceRef};

use super::{StoreError, StoreResult};

/// A status as a stored number (0 sent, 1 delivered, 2 read).
pub(super) fn status_code(s: MessageStatus) -> i64 {
    match s {
        MessageStatus::Sent => 0,
        MessageStatus::Delivered => 1,
        MessageStatus::Read => 2,
    }
}

/// A stored number as a status.
pub(super) fn status_from(code: i64) -> MessageStatus {
    match code {
        1 => MessageStatus::Delivered,
        2 => MessageStatus::Read,
        _ => MessageStatus::Sent,
    }
}

/// Checks a version-2 message's copies against the devices they must
/// cover; the mismatch, if any.
pub(super) fn check_copies(
    need: &BTreeMap<DeviceRef, u32>,
    copies: &[DeviceCopy],
) -> StoreResult<DeviceMismatch> {
    let mut mismatch = DeviceMismatch::default();
    let mut seen = HashSet::new();
    for copy in copies {
        let key = DeviceRef {
            user_id: copy.user_id.clone(),
            device_id: copy.device_id,
            registration_id: None,
        };
        if !seen.insert(key.clone()) {
            return Err(StoreError::Conflict("two copies for one device"));
        }
        match need.get(&key) {
            None => mismatch.extra.push(key),
            Some(reg) if *reg != copy.registration_id => mismatch.stale.push(DeviceRef {
                registration_id: Some(*reg),
                ..key
            }),
            Some(_) => {}
        }
    }
    // Sorted by (user, device), as docs/API.md promises, whatever order
    // the frame listed them in.
    let by_device = |a: &DeviceRef, b: &DeviceRef| {
        (a.user_id.as_str(), a.device_id).cmp(&(b.user_id.as_str(), b.device_id))
    };
    mismatch.extra.sort_by(by_device);
    mismatch.stale.sort_by(by_device);
    mismatch.missing = need
        .iter()
        .filter(|(k, _)| !seen.contains(*k))
        .map(|(k, reg)| DeviceRef {
            registration_id: Some(*reg),
            ..k.clone()
        })
        .collect();
    Ok(mismatch)
}

/// Facts that never become false, remembered by a writer so the relay
/// path does not re-check them with a statement per message: users are never
/// deleted, and a contact pair, once recorded, stays. (On PostgreSQL they are added only after the commit that wrote
/// them.)
#[derive(Default)]
pub(super) struct Known {
    pub(super) users: HashSet<String>,
    pub(super) contacts: HashSet<(String, String)>,
    pub(super) posters: HashSet<(String, String)>,
}

/// Whether a first record (`name`, signed by `owner`, listing `members`
/// besides the owner) describes `group` exactly as it is.
pub(super) fn signs_as_is(
    group: Option<chat_proto::rest::Group>,
    name: &str,
    owner: &str,
    members: &[(String, chat_proto::Role)],
) -> bool {
    let Some(g) = group else { return false };
    let mut listed: Vec<(&str, chat_proto::Role)> = g
        .members
        .iter()
        .filter(|m| m.user_id != owner)
        .map(|m| (m.user_id.as_str(), m.role))
        .collect();
    let mut signed: Vec<(&str, chat_proto::Role)> =
        members.iter().map(|(u, r)| (u.as_str(), *r)).collect();
    listed.sort_unstable_by(|a, b| a.0.cmp(b.0));
    signed.sort_unstable_by(|a, b| a.0.cmp(b.0));
    g.owner_id == owner && g.name == name && listed == signed
}
