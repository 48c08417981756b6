//! Accounts from the application's side: register, log in (as this
//! store's device, with its proof), log in replacing every device, and the
//! checks around them (the store's owner, whose keys are on the server).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chat_proto::rest::{self, ErrorCode};
use chat_transport::TransportError;
use e2ee_store::{Account, StoreError};
use zeroize::Zeroizing;

use super::{Client, Result, now_ms};
use crate::convert;
use crate::error::ClientError;
use crate::keys;

impl Client {
    async fn adopt(&self, auth: rest::AuthResponse, replace_keys: bool) -> Result<Account> {
        // No device id: the server took the login as replacing every
        // device (asked for, or the account has none left).
        let replace_keys = replace_keys || auth.device_id.is_none();
        let device_id = auth.device_id.unwrap_or(1);
        self.check_keys_are_ours(&auth, replace_keys).await?;
        let account = Account {
            user_id: auth.user.id.clone(),
            username: auth.user.username.clone(),
            server_url: self.inner.config.server_url.clone(),
        };
        let (a, token) = (account.clone(), Zeroizing::new(auth.token));
        self.inner
            .db(move |s| {
                s.write(|tx| {
                    if let Some(old) = tx.account()?
                        && old.user_id != a.user_id
                    {
                        return Err(StoreError::Invalid("store belongs to another account"));
                    }
                    tx.set_account(&a)?;
                    // The device the server says the login is (a
                    // replacement becomes device 1).
                    tx.set_device_id(device_id)?;
                    tx.set_token(Some(token.as_str()))
                })
            })
            .await?;
        if let Ok(mut me) = self.inner.me.write() {
            *me = Some(account.clone());
        }
        self.inner
            .replace_devices
            .store(replace_keys, std::sync::atomic::Ordering::Relaxed);
        let uploaded = keys::maintain(&self.inner, true).await;
        self.inner
            .replace_devices
            .store(false, std::sync::atomic::Ordering::Relaxed);
        uploaded?;
        self.inner.start_connection().await?;
        Ok(account)
    }

    /// The server refuses a password alone while the account has devices;
    /// this is the second check, of the keys: logging in from a store whose
    /// identity is not the one on the server would replace the other
    /// store's keys (it could no longer decrypt). Refused, unless
    /// `replace_keys`; the token just issued is revoked again.
    async fn check_keys_are_ours(
        &self,
        auth: &rest::AuthResponse,
        replace_keys: bool,
    ) -> Result<()> {
        if replace_keys {
            return Ok(());
        }
        let status = self.inner.rest.prekey_status().await?;
        let Some(theirs) = status.identity_key else {
            return Ok(());
        };
        let ours = self
            .inner
            .db(|s| s.read(|tx| tx.identity()))
            .await?
            .map(|i| convert::identity_b64(&i));
        if ours.as_deref() == Some(theirs.as_str()) {
            return Ok(());
        }
        let _ = self.inner.rest.logout().await;
        let saved = self.inner.db(|s| s.read(|tx| tx.token())).await?;
        self.inner.rest.set_token(saved);
        Err(ClientError::KeysOnAnotherStore {
            username: auth.user.username.clone(),
        })
    }

    fn check_store_owner(&self, username: &str) -> Result<()> {
        if let Some(a) = self.account()
            && a.username != username
        {
            return Err(ClientError::WrongAccount {
                stored: a.username,
                requested: username.to_owned(),
            });
        }
        Ok(())
    }

    /// Creates an account, makes and uploads our keys, and connects.
    pub async fn register(&self, username: &str, password: &str) -> Result<Account> {
        self.check_store_owner(username)?;
        // Device 1's registrationId, drawn as a linked device draws its own.
        let request = rest::RegisterRequest {
            username: username.to_owned(),
            password: password.to_owned(),
            avatar_url: None,
            registration_id: Some(rand_core::RngCore::next_u32(&mut rand_core::OsRng)),
        };
        let auth = self.inner.rest.register_with(&request).await?;
        self.adopt(auth, false).await
    }

    /// Logs in (keys made and uploaded on first login, refilled and rotated
    /// as needed) and connects. An account whose keys on the server are not
    /// this store's (it is in use from another store) is refused with
    /// [`ClientError::KeysOnAnotherStore`]: see
    /// [`Client::login_replacing_keys`].
    pub async fn login(&self, username: &str, password: &str) -> Result<Account> {
        self.check_store_owner(username)?;
        // A store that is a device of the account proves it (the server
        // gives a password alone no existing device).
        let proof = self.device_proof().await?;
        let device_id = proof.as_ref().map(|p| p.device_id);
        let request = rest::LoginRequest {
            username: username.to_owned(),
            password: password.to_owned(),
            device: proof,
            replace_devices: false,
        };
        let auth = match self.inner.rest.login_with(&request).await {
            Err(TransportError::Api {
                code: ErrorCode::Conflict,
                ..
            }) => {
                return Err(ClientError::KeysOnAnotherStore {
                    username: username.to_owned(),
                });
            }
            Err(TransportError::Api {
                code: ErrorCode::Forbidden,
                ..
            }) if device_id.is_some() => {
                return Err(ClientError::DeviceGone {
                    device_id: device_id.unwrap_or(1),
                });
            }
            other => other?,
        };
        self.adopt(auth, false).await
    }

    /// This store's proof that it is its device of the account (docs/API.md,
    /// "Logging in again"): `None` for a store with no account or identity.
    async fn device_proof(&self) -> Result<Option<rest::DeviceProof>> {
        let Some(me) = self.account() else {
            return Ok(None);
        };
        let found = self
            .inner
            .db(|s| s.read(|tx| Ok((tx.identity()?, tx.device_id()?))))
            .await?;
        let (Some(identity), device_id) = found else {
            return Ok(None);
        };
        let signed_at = now_ms();
        let message = chat_proto::devices::device_login_message(&me.user_id, device_id, signed_at);
        Ok(Some(rest::DeviceProof {
            device_id,
            signed_at,
            signature: BASE64.encode(identity.sign(&message)),
        }))
    }

    /// Logs in and replaces the account's keys on the server with this
    /// store's: for a user who lost the store the account was used from.
    /// The server revokes every other login of the account (that store
    /// stops working), and peers see an identity change.
    pub async fn login_replacing_keys(&self, username: &str, password: &str) -> Result<Account> {
        self.check_store_owner(username)?;
        let request = rest::LoginRequest {
            username: username.to_owned(),
            password: password.to_owned(),
            device: None,
            replace_devices: true,
        };
        let auth = self.inner.rest.login_with(&request).await?;
        self.adopt(auth, true).await
    }
}
