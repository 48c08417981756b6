//! The account's devices (protocol version 2, DESIGN.md section 8): list,
//! remove, and link. Linking: the new device calls [`Client::start_link`]
//! and shows [`PendingLink::code`]; a device already linked calls
//! [`Client::approve_link`] with that code; the new device's
//! [`PendingLink::finish`] then opens the sealed identity, registers itself
//! and uploads its own prekeys. The server does not deliver messages to
//! linked devices yet (`docs/API.md`, "Devices"), so a linked device does
//! not connect.

use std::time::Instant;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chat_proto::devices::{DevicesResponse, LinkDeviceRequest};
use chat_transport::ProvisioningSocket;
use e2ee_core::provision::{self, LinkCode, ProvisionContents, ProvisioningKeys};
use e2ee_store::Account;
use rand_core::{OsRng, RngCore};
use zeroize::Zeroizing;

use super::membership::user_bytes;
use super::{Client, Result};
use crate::error::ClientError;
use crate::keys;

/// A device being linked: show [`PendingLink::code`] (as a QR code or
/// text), then wait in [`PendingLink::finish`].
#[derive(Debug)]
pub struct PendingLink {
    client: Client,
    socket: ProvisioningSocket,
    keys: ProvisioningKeys,
    code: LinkCode,
    name: String,
}

/// What linking made of this store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkedAccount {
    /// The account, as on the device that approved.
    pub account: Account,
    /// This device's id on the server.
    pub device_id: u32,
    /// How long [`PendingLink::finish`] took, in ms: waiting for the
    /// approval, registering, and making and uploading this device's
    /// prekeys.
    pub took_ms: u64,
}

impl PendingLink {
    /// The text to show (and encode as a QR code): `e2ee-link:2:…`.
    pub fn code(&self) -> String {
        self.code.to_text()
    }

    /// When the server stops waiting (ms since the epoch).
    pub fn expires_at(&self) -> i64 {
        self.socket.expires_at()
    }

    /// [`PendingLink::arrive`] then [`ArrivedLink::accept`], for callers
    /// that confirmed the account beforehand some other way (a script that
    /// showed the code only to its own device). A person is shown
    /// [`ArrivedLink::username`] and [`ArrivedLink::fingerprint`] first:
    /// whoever sees the code can answer it.
    pub async fn finish(self) -> Result<LinkedAccount> {
        self.arrive().await?.accept().await
    }

    /// Waits for a device's sealed message and opens it. Nothing is
    /// registered or stored yet: the account it names is for the person to
    /// confirm (any account can answer a code it has seen, first).
    pub async fn arrive(self) -> Result<ArrivedLink> {
        let started = Instant::now();
        let PendingLink {
            client,
            socket,
            keys,
            code,
            name,
        } = self;
        let sealed = socket.sealed().await.map_err(|e| match e {
            chat_transport::TransportError::Closed => {
                ClientError::Link("the code expired before a device approved it".into())
            }
            other => other.into(),
        })?;
        let bytes = BASE64
            .decode(sealed)
            .map_err(|_| ClientError::Link("the sealed message is not base64".into()))?;
        let contents = provision::open(&keys, code.address(), &bytes)
            .map_err(|e| ClientError::Link(format!("the sealed message does not open: {e}")))?;
        Ok(ArrivedLink {
            client,
            contents,
            name,
            started,
        })
    }
}

/// An approval that arrived for a [`PendingLink`]: the account it would
/// join, before anything is registered. [`ArrivedLink::accept`] joins it;
/// dropping it joins nothing (the link token inside expires unused).
pub struct ArrivedLink {
    client: Client,
    contents: ProvisionContents,
    name: String,
    started: Instant,
}

impl std::fmt::Debug for ArrivedLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArrivedLink")
            .field("username", &self.contents.username)
            .finish_non_exhaustive()
    }
}

impl ArrivedLink {
    /// The account's name, as the approving device put it.
    pub fn username(&self) -> &str {
        &self.contents.username
    }

    /// The account's identity fingerprint (grouped hex, as
    /// [`Client::fingerprint`] shows it on the account's devices).
    pub fn fingerprint(&self) -> String {
        e2ee_core::fingerprint_grouped(&self.contents.identity().public())
    }

    /// Registers this device with the link token inside, stores the
    /// identity and the login, and uploads this device's prekeys.
    pub async fn accept(self) -> Result<LinkedAccount> {
        let ArrivedLink {
            client,
            contents,
            name,
            started,
        } = self;
        let inner = &client.inner;
        let linked = inner
            .rest
            .link_device(&LinkDeviceRequest {
                link_token: contents.link_token.clone(),
                name,
                registration_id: OsRng.next_u32(),
            })
            .await?;
        if linked.user.id != uuid::Uuid::from_bytes(contents.user_id).to_string() {
            return Err(ClientError::Link(
                "the server linked this device to another account than the sealed one".into(),
            ));
        }
        let account = Account {
            user_id: linked.user.id.clone(),
            username: linked.user.username.clone(),
            server_url: inner.config.server_url.clone(),
        };
        let (a, token, identity, device) = (
            account.clone(),
            Zeroizing::new(linked.token.clone()),
            contents.identity(),
            linked.device_id,
        );
        inner
            .db(move |s| {
                s.write(|tx| {
                    tx.init_identity(&identity)?;
                    tx.set_account(&a)?;
                    tx.set_device_id(device)?;
                    tx.set_token(Some(token.as_str()))
                })
            })
            .await?;
        if let Ok(mut me) = inner.me.write() {
            *me = Some(account.clone());
        }
        keys::maintain(inner, true).await?;
        // What the user pinned and decided on the other devices comes to
        // this one before it talks to anyone (DESIGN.md section 10): it
        // asks now, and the answer is applied as it arrives.
        if let Err(e) = inner.discover_own_devices().await {
            tracing::debug!(error = %e, "own devices not reachable yet");
        }
        if let Err(e) = inner.request_contact_sync().await {
            tracing::warn!(error = %e, "could not ask our devices for their contacts");
        }
        Ok(LinkedAccount {
            account,
            device_id: linked.device_id,
            took_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        })
    }
}

impl Client {
    /// This store's device id on the account (1 for the first device; a
    /// linked one gets the next id). Read from the store: works offline.
    pub async fn device_id(&self) -> Result<u32> {
        self.inner.db(|s| s.read(|tx| tx.device_id())).await
    }

    /// The account's devices, by id, and which one this is.
    pub async fn devices(&self) -> Result<DevicesResponse> {
        Ok(self.inner.rest.devices().await?)
    }

    /// Removes one of the account's devices: its tokens stop working and its
    /// connections close. Removing this device logs it out.
    pub async fn remove_device(&self, device_id: u32) -> Result<()> {
        Ok(self.inner.rest.remove_device(device_id).await?)
    }

    /// Starts linking this (empty) store as a new device of an account:
    /// opens the provisioning socket and makes the code to show.
    pub async fn start_link(&self, device_name: &str) -> Result<PendingLink> {
        if self.account().is_some() {
            return Err(ClientError::Link(
                "this store already belongs to an account".into(),
            ));
        }
        let socket = ProvisioningSocket::open(&self.inner.rest.ws_url()?).await?;
        let keys = ProvisioningKeys::generate(&mut OsRng);
        let code = keys
            .code(socket.address())
            .map_err(|e| ClientError::Link(e.to_string()))?;
        Ok(PendingLink {
            client: self.clone(),
            socket,
            keys,
            code,
            name: device_name.to_owned(),
        })
    }

    /// Approves a new device from the code it shows: hands it, sealed to
    /// the key in the code, this account's identity and a single-use link
    /// token. Only approve a code read from a device in front of you: whoever
    /// made the code gets the identity.
    pub async fn approve_link(&self, code: &str) -> Result<()> {
        let code = LinkCode::from_text(code).map_err(|e| ClientError::Link(e.to_string()))?;
        let me = self.inner.me()?;
        let identity = self
            .inner
            .db(|s| s.read(|tx| tx.identity()))
            .await?
            .ok_or(ClientError::NotLoggedIn)?;
        let token = self.inner.rest.link_token().await?;
        let contents = ProvisionContents::new(
            &identity,
            user_bytes(&me.user_id)?,
            &me.username,
            &token.link_token,
        )
        .map_err(|e| ClientError::Link(e.to_string()))?;
        let sealed = provision::seal(&mut OsRng, &code, &contents)
            .map_err(|e| ClientError::Link(e.to_string()))?;
        self.inner
            .rest
            .provision(code.address(), &BASE64.encode(sealed))
            .await?;
        Ok(())
    }
}
