//! Linked devices (protocol version 2, DESIGN.md section 8): the REST
//! bodies of `/api/devices` and `/api/provisioning`, and the frames of the
//! provisioning socket `/ws/provision`. See `docs/API.md`, "Devices".

use serde::{Deserialize, Serialize};

use crate::rest::User;

/// Longest device name, in characters.
pub const DEVICE_NAME_MAX: usize = 64;
/// Longest sealed provisioning message (base64 characters).
pub const PROVISION_SEALED_MAX: usize = 4096;

/// What a device signs with the account's identity `SIG` to log in again
/// as itself ([`crate::rest::DeviceProof`]): the ASCII label
/// `e2ee-chat device login v1`, the user id's ASCII bytes, the device id
/// (u32 big-endian) and `signedAt` (i64 big-endian).
pub fn device_login_message(user_id: &str, device_id: u32, signed_at: i64) -> Vec<u8> {
    const LABEL: &[u8] = b"e2ee-chat device login v1";
    let mut m = Vec::with_capacity(LABEL.len() + user_id.len() + 12);
    m.extend_from_slice(LABEL);
    m.extend_from_slice(user_id.as_bytes());
    m.extend_from_slice(&device_id.to_be_bytes());
    m.extend_from_slice(&signed_at.to_be_bytes());
    m
}

/// One of the account's devices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Device {
    /// Assigned by the server: 1 for the account's first device, then +1
    /// per link, never reused.
    pub device_id: u32,
    /// Chosen by the device when it was linked ("first device" for 1).
    pub name: String,
    /// Drawn by the device when it was linked (0 when it gave none).
    pub registration_id: u32,
    /// When it was linked (ms since the epoch).
    pub created_at: i64,
    /// When one of its tokens was last used (ms, to the minute).
    pub last_seen: i64,
}

/// `GET /api/devices`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DevicesResponse {
    /// The caller's devices, by id.
    pub devices: Vec<Device>,
    /// The calling device's id.
    pub current: u32,
}

/// `POST /api/devices/link-token`: a single-use token for one new device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LinkToken {
    /// 32 random bytes, base64url without padding.
    pub link_token: String,
    /// When it stops working (ms since the epoch).
    pub expires_at: i64,
}

/// `POST /api/devices`: the new device registers itself with the link
/// token it found in the sealed provisioning message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LinkDeviceRequest {
    /// From [`LinkToken`], single use.
    pub link_token: String,
    /// 1 to [`DEVICE_NAME_MAX`] characters.
    pub name: String,
    /// The device's random `registrationId`.
    pub registration_id: u32,
}

/// The answer to [`LinkDeviceRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LinkedDevice {
    /// The account.
    pub user: User,
    /// The new device's id.
    pub device_id: u32,
    /// The new device's own bearer token.
    pub token: String,
}

/// `PUT /api/provisioning/{address}`: a linked device hands the sealed
/// provisioning message to the new device's socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProvisionRequest {
    /// `e2ee_core::provision::seal`'s bytes, standard base64.
    pub sealed: String,
}

/// What the server sends on `/ws/provision`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum ProvisionFrame {
    /// First: where a linked device sends the sealed message.
    #[serde(rename_all = "camelCase")]
    Address {
        /// 16 random bytes, base64url without padding.
        address: String,
        /// When the socket closes if nothing came (ms since the epoch).
        expires_at: i64,
    },
    /// Then, at most once: the sealed message, and the socket closes.
    #[serde(rename_all = "camelCase")]
    Message {
        /// As [`ProvisionRequest::sealed`].
        sealed: String,
    },
}

/// One device's bundle in [`DeviceBundles`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceBundle {
    /// The device.
    pub device_id: u32,
    /// Its `registrationId` (0 when it gave none).
    pub registration_id: u32,
    /// Its keys: the account's identity, the device's signed prekey, and
    /// one-time prekeys claimed for the caller.
    pub bundle: crate::rest::PreKeyBundle,
}

/// `GET /api/users/{userId}/devices/prekeys`: a bundle for each of the
/// user's devices that has uploaded keys, by device id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceBundles {
    /// The bundles.
    pub bundles: Vec<DeviceBundle>,
}
