//! The REST client: one typed method per endpoint of DESIGN.md section 3.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use chat_proto::rest::{
    AddMemberRequest, AuthResponse, ChangesResponse, CreateGroupRequest, ErrorBody, Group,
    GroupsResponse, Health, LoginRequest, MediaUploaded, MessagesResponse, PostChangeRequest,
    PreKeyBundle, PreKeyStatus, PreKeyUpload, RegisterRequest, StatusBatch, StatusBatchResult,
    UpdateGroupRequest, User, UsersResponse, VerifyKeyRequest, VerifyKeyStatus,
};
use reqwest::{Method, RequestBuilder, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;
use zeroize::Zeroizing;

use crate::error::TransportError;

/// A REST client for one server. Cheap to clone (clones share the
/// connection pool and the token). `Debug` never shows the token.
#[derive(Clone)]
pub struct RestClient {
    http: reqwest::Client,
    base: Url,
    token: Arc<RwLock<Option<Zeroizing<String>>>>,
}

impl std::fmt::Debug for RestClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestClient")
            .field("base", &self.base.as_str())
            .field("logged_in", &self.has_token())
            .finish_non_exhaustive()
    }
}

fn path_segment(s: &str) -> String {
    // Ids are UUIDs and key ids numbers; anything else is escaped so it can
    // never change the path.
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

impl RestClient {
    /// A client for the server at `base` (`http://` or `https://`), with a
    /// 30 s request timeout.
    pub fn new(base: &str) -> Result<Self, TransportError> {
        Self::with_timeout(base, Duration::from_secs(30))
    }

    /// Like [`RestClient::new`] with another request timeout.
    pub fn with_timeout(base: &str, timeout: Duration) -> Result<Self, TransportError> {
        let base = Url::parse(base).map_err(|e| TransportError::Url(format!("{base}: {e}")))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(TransportError::Url(format!(
                "{base}: the scheme must be http or https"
            )));
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(10))
            .tcp_nodelay(true)
            .build()
            .map_err(|e| TransportError::Network(e.to_string()))?;
        Ok(Self {
            http,
            base,
            token: Arc::new(RwLock::new(None)),
        })
    }

    /// The server's base URL.
    pub fn base(&self) -> &Url {
        &self.base
    }

    /// The WebSocket URL (`ws://…/ws` or `wss://…/ws`).
    pub fn ws_url(&self) -> Result<Url, TransportError> {
        let mut u = self
            .base
            .join("/ws")
            .map_err(|e| TransportError::Url(e.to_string()))?;
        let scheme = if self.base.scheme() == "https" {
            "wss"
        } else {
            "ws"
        };
        u.set_scheme(scheme)
            .map_err(|()| TransportError::Url("cannot set the WebSocket scheme".into()))?;
        Ok(u)
    }

    /// Uses `token` for authenticated requests.
    pub fn set_token(&self, token: Option<Zeroizing<String>>) {
        if let Ok(mut t) = self.token.write() {
            *t = token;
        }
    }

    /// The current token.
    pub fn token(&self) -> Option<Zeroizing<String>> {
        self.token.read().ok().and_then(|t| t.clone())
    }

    /// Whether a token is set.
    pub fn has_token(&self) -> bool {
        self.token.read().map(|t| t.is_some()).unwrap_or(false)
    }

    fn request(
        &self,
        method: Method,
        path: &str,
        auth: bool,
    ) -> Result<RequestBuilder, TransportError> {
        let url = self
            .base
            .join(path)
            .map_err(|e| TransportError::Url(e.to_string()))?;
        let mut req = self.http.request(method, url);
        if auth {
            let token = self.token().ok_or(TransportError::NoToken)?;
            req = req.bearer_auth(token.as_str());
        }
        Ok(req)
    }

    async fn send(req: RequestBuilder) -> Result<reqwest::Response, TransportError> {
        let resp = req.send().await?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let code = status.as_u16();
        let bytes = resp.bytes().await.unwrap_or_default();
        match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(body) => Err(TransportError::Api {
                status: code,
                code: body.error.code,
                message: body.error.message,
                reason: body.error.reason,
            }),
            Err(_) => Err(TransportError::Status { status: code }),
        }
    }

    async fn json<T: DeserializeOwned>(req: RequestBuilder) -> Result<T, TransportError> {
        let resp = Self::send(req).await?;
        let bytes = resp.bytes().await?;
        serde_json::from_slice(&bytes).map_err(|e| TransportError::Decode(e.to_string()))
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, TransportError> {
        Self::json(self.request(Method::GET, path, true)?).await
    }

    async fn with_body<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: &B,
        auth: bool,
    ) -> Result<T, TransportError> {
        Self::json(self.request(method, path, auth)?.json(body)).await
    }

    async fn no_content(&self, method: Method, path: &str) -> Result<(), TransportError> {
        Self::send(self.request(method, path, true)?)
            .await
            .map(drop)
    }

    // ---- accounts ---------------------------------------------------------

    /// Creates an account and keeps its token.
    pub async fn register(
        &self,
        username: &str,
        password: &str,
        avatar_url: Option<&str>,
    ) -> Result<AuthResponse, TransportError> {
        self.register_with(&RegisterRequest {
            username: username.to_owned(),
            password: password.to_owned(),
            avatar_url: avatar_url.map(str::to_owned),
            registration_id: None,
        })
        .await
    }

    /// [`RestClient::register`] with every field of the request (device
    /// 1's `registrationId`).
    pub async fn register_with(
        &self,
        body: &RegisterRequest,
    ) -> Result<AuthResponse, TransportError> {
        let r: AuthResponse = self
            .with_body(Method::POST, "/api/auth/register", body, false)
            .await?;
        self.set_token(Some(Zeroizing::new(r.token.clone())));
        Ok(r)
    }

    /// Logs in and keeps the token.
    pub async fn login(
        &self,
        username: &str,
        password: &str,
    ) -> Result<AuthResponse, TransportError> {
        self.login_with(&LoginRequest {
            username: username.to_owned(),
            password: password.to_owned(),
            device: None,
            replace_devices: false,
        })
        .await
    }

    /// Logs in with every field of the request (a device's proof, or
    /// `replaceDevices`) and keeps the token.
    pub async fn login_with(&self, body: &LoginRequest) -> Result<AuthResponse, TransportError> {
        let r: AuthResponse = self
            .with_body(Method::POST, "/api/auth/login", body, false)
            .await?;
        self.set_token(Some(Zeroizing::new(r.token.clone())));
        Ok(r)
    }

    /// Revokes the token on the server and forgets it.
    pub async fn logout(&self) -> Result<(), TransportError> {
        let r = self.no_content(Method::POST, "/api/auth/logout").await;
        self.set_token(None);
        r
    }

    /// All users (or those matching `username` exactly).
    pub async fn users(&self, username: Option<&str>) -> Result<Vec<User>, TransportError> {
        let mut req = self.request(Method::GET, "/api/users", true)?;
        if let Some(u) = username {
            req = req.query(&[("username", u)]);
        }
        Ok(Self::json::<UsersResponse>(req).await?.users)
    }

    /// One user by id.
    pub async fn user(&self, user_id: &str) -> Result<User, TransportError> {
        self.get(&format!("/api/users/{}", path_segment(user_id)))
            .await
    }

    /// One user by username, if there is one.
    pub async fn user_by_name(&self, username: &str) -> Result<Option<User>, TransportError> {
        Ok(self
            .users(Some(username))
            .await?
            .into_iter()
            .find(|u| u.username == username))
    }

    // ---- prekeys ----------------------------------------------------------

    /// Uploads the identity, a signed prekey and one-time prekeys.
    pub async fn upload_prekeys(
        &self,
        upload: &PreKeyUpload,
    ) -> Result<PreKeyStatus, TransportError> {
        self.with_body(Method::POST, "/api/users/prekeys", upload, true)
            .await
    }

    /// Claims a user's bundle (each one-time prekey is handed out once).
    pub async fn prekey_bundle(&self, user_id: &str) -> Result<PreKeyBundle, TransportError> {
        self.get(&format!("/api/users/{}/prekeys", path_segment(user_id)))
            .await
    }

    /// Our own prekey status.
    pub async fn prekey_status(&self) -> Result<PreKeyStatus, TransportError> {
        self.get("/api/users/prekeys/status").await
    }

    /// Deletes one of our one-time prekeys from the server.
    pub async fn delete_prekey(&self, key_id: u32) -> Result<(), TransportError> {
        self.no_content(Method::DELETE, &format!("/api/users/prekeys/{key_id}"))
            .await
    }

    // ---- verification -----------------------------------------------------

    /// Records that we verified `user_id`'s key with this fingerprint.
    pub async fn verify_key(
        &self,
        req: &VerifyKeyRequest,
    ) -> Result<VerifyKeyStatus, TransportError> {
        self.with_body(Method::POST, "/api/verify-key", req, true)
            .await
    }

    /// Our verification record for a user.
    pub async fn verification(&self, user_id: &str) -> Result<VerifyKeyStatus, TransportError> {
        self.get(&format!("/api/verify-key/{}", path_segment(user_id)))
            .await
    }

    /// Removes our verification of a user.
    pub async fn delete_verification(&self, user_id: &str) -> Result<(), TransportError> {
        self.no_content(
            Method::DELETE,
            &format!("/api/verify-key/{}", path_segment(user_id)),
        )
        .await
    }

    // ---- messages ---------------------------------------------------------

    /// Our undelivered messages from one peer (the WebSocket is the usual way).
    pub async fn pending_messages(
        &self,
        peer_id: &str,
    ) -> Result<MessagesResponse, TransportError> {
        self.get(&format!("/api/messages/{}", path_segment(peer_id)))
            .await
    }

    /// Reports delivered / read for a batch.
    pub async fn update_status(
        &self,
        batch: &StatusBatch,
    ) -> Result<StatusBatchResult, TransportError> {
        self.with_body(Method::PUT, "/api/messages/status", batch, true)
            .await
    }

    // ---- groups -----------------------------------------------------------

    /// Creates a group with us as owner.
    pub async fn create_group(&self, req: &CreateGroupRequest) -> Result<Group, TransportError> {
        self.with_body(Method::POST, "/api/groups", req, true).await
    }

    /// Our groups.
    pub async fn groups(&self) -> Result<Vec<Group>, TransportError> {
        Ok(self.get::<GroupsResponse>("/api/groups").await?.groups)
    }

    /// One group with its members.
    pub async fn group(&self, group_id: &str) -> Result<Group, TransportError> {
        self.get(&format!("/api/groups/{}", path_segment(group_id)))
            .await
    }

    /// Renames or re-describes a group.
    pub async fn update_group(
        &self,
        group_id: &str,
        req: &UpdateGroupRequest,
    ) -> Result<Group, TransportError> {
        self.with_body(
            Method::PUT,
            &format!("/api/groups/{}", path_segment(group_id)),
            req,
            true,
        )
        .await
    }

    /// Deletes a group (owner only).
    pub async fn delete_group(&self, group_id: &str) -> Result<(), TransportError> {
        self.no_content(
            Method::DELETE,
            &format!("/api/groups/{}", path_segment(group_id)),
        )
        .await
    }

    /// Adds a member.
    pub async fn add_member(
        &self,
        group_id: &str,
        req: &AddMemberRequest,
    ) -> Result<Group, TransportError> {
        self.with_body(
            Method::POST,
            &format!("/api/groups/{}/members", path_segment(group_id)),
            req,
            true,
        )
        .await
    }

    /// Removes a member (or, with our own id, leaves).
    pub async fn remove_member(&self, group_id: &str, user_id: &str) -> Result<(), TransportError> {
        self.no_content(
            Method::DELETE,
            &format!(
                "/api/groups/{}/members/{}",
                path_segment(group_id),
                path_segment(user_id)
            ),
        )
        .await
    }

    /// Sets a member's role in an unsigned (version-1) group (owner only).
    pub async fn set_role(
        &self,
        group_id: &str,
        user_id: &str,
        req: &chat_proto::rest::SetRoleRequest,
    ) -> Result<Group, TransportError> {
        let path = format!(
            "/api/groups/{}/members/{}",
            path_segment(group_id),
            path_segment(user_id)
        );
        self.with_body(Method::PUT, &path, req, true).await
    }

    /// Posts a signed change record (base64 wire bytes): the server applies
    /// it on top of the group's head (a `Create` at epoch 0 makes the
    /// group) and answers the group as it is now.
    pub async fn post_group_change(
        &self,
        group_id: &str,
        record: &str,
    ) -> Result<Group, TransportError> {
        self.with_body(
            Method::POST,
            &format!("/api/groups/{}/changes", path_segment(group_id)),
            &PostChangeRequest {
                record: record.to_owned(),
            },
            true,
        )
        .await
    }

    /// The group's signed change records after epoch `after` (all without).
    pub async fn group_changes(
        &self,
        group_id: &str,
        after: Option<u64>,
    ) -> Result<ChangesResponse, TransportError> {
        let path = match after {
            Some(a) => format!("/api/groups/{}/changes?after={a}", path_segment(group_id)),
            None => format!("/api/groups/{}/changes", path_segment(group_id)),
        };
        self.get(&path).await
    }

    /// Our undelivered messages in a group.
    pub async fn group_messages(&self, group_id: &str) -> Result<MessagesResponse, TransportError> {
        self.get(&format!("/api/groups/{}/messages", path_segment(group_id)))
            .await
    }

    // ---- devices (version 2) ----------------------------------------------

    /// The account's devices and which one we are.
    pub async fn devices(&self) -> Result<chat_proto::devices::DevicesResponse, TransportError> {
        self.get("/api/devices").await
    }

    /// One bundle per device of `user_id`, each with its one-time prekeys
    /// claimed for us.
    pub async fn device_bundles(
        &self,
        user_id: &str,
    ) -> Result<chat_proto::devices::DeviceBundles, TransportError> {
        self.get(&format!(
            "/api/users/{}/devices/prekeys",
            path_segment(user_id)
        ))
        .await
    }

    /// One device's bundle (`GET /api/users/{id}/devices/{device}/prekeys`),
    /// claiming its one-time prekeys.
    pub async fn device_bundle(
        &self,
        user_id: &str,
        device_id: u32,
    ) -> Result<chat_proto::devices::DeviceBundles, TransportError> {
        self.get(&format!(
            "/api/users/{}/devices/{device_id}/prekeys",
            path_segment(user_id)
        ))
        .await
    }

    /// A single-use token for linking one new device.
    pub async fn link_token(&self) -> Result<chat_proto::devices::LinkToken, TransportError> {
        self.with_body(
            Method::POST,
            "/api/devices/link-token",
            &serde_json::json!({}),
            true,
        )
        .await
    }

    /// Hands a sealed provisioning message to a new device's socket.
    pub async fn provision(&self, address: &str, sealed: &str) -> Result<(), TransportError> {
        let body = chat_proto::devices::ProvisionRequest {
            sealed: sealed.to_owned(),
        };
        let path = format!("/api/provisioning/{}", path_segment(address));
        Self::send(self.request(Method::PUT, &path, true)?.json(&body))
            .await
            .map(drop)
    }

    /// The new device registers itself with the link token; keeps the
    /// token it is given.
    pub async fn link_device(
        &self,
        req: &chat_proto::devices::LinkDeviceRequest,
    ) -> Result<chat_proto::devices::LinkedDevice, TransportError> {
        let r: chat_proto::devices::LinkedDevice = self
            .with_body(Method::POST, "/api/devices", req, false)
            .await?;
        self.set_token(Some(Zeroizing::new(r.token.clone())));
        Ok(r)
    }

    /// Removes one of the account's devices: its tokens stop working.
    pub async fn remove_device(&self, device_id: u32) -> Result<(), TransportError> {
        self.no_content(Method::DELETE, &format!("/api/devices/{device_id}"))
            .await
    }

    // ---- media ------------------------------------------------------------

    /// Uploads an (already encrypted) attachment.
    pub async fn upload_media(&self, ciphertext: Vec<u8>) -> Result<MediaUploaded, TransportError> {
        let req = self
            .request(Method::POST, "/api/media", true)?
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(ciphertext);
        Self::json(req).await
    }

    /// Downloads an attachment's ciphertext, reading at most `limit`
    /// bytes: the body is read chunk by chunk and the download stops with
    /// [`TransportError::TooLong`] as soon as it (or its announced length)
    /// goes past the limit, so a server cannot make the client buffer more
    /// than it expects.
    pub async fn download_media(
        &self,
        media_id: &str,
        limit: u64,
    ) -> Result<Vec<u8>, TransportError> {
        let req = self.request(
            Method::GET,
            &format!("/api/media/{}", path_segment(media_id)),
            true,
        )?;
        let mut resp = Self::send(req).await?;
        if resp.content_length().is_some_and(|n| n > limit) {
            return Err(TransportError::TooLong { limit });
        }
        let mut out = Vec::with_capacity(usize::try_from(limit.min(1 << 20)).unwrap_or(0));
        while let Some(chunk) = resp.chunk().await? {
            if out.len() as u64 + chunk.len() as u64 > limit {
                return Err(TransportError::TooLong { limit });
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }

    // ---- service ----------------------------------------------------------

    /// `GET /health`.
    pub async fn health(&self) -> Result<Health, TransportError> {
        Self::json(self.request(Method::GET, "/health", false)?).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn urls() {
        let r = RestClient::new("https://chat.example.org").unwrap();
        assert_eq!(r.ws_url().unwrap().as_str(), "wss://chat.example.org/ws");
        let r = RestClient::new("http://127.0.0.1:8080/").unwrap();
        assert_eq!(r.ws_url().unwrap().as_str(), "ws://127.0.0.1:8080/ws");
        assert!(matches!(
            RestClient::new("ftp://x"),
            Err(TransportError::Url(_))
        ));
        assert!(matches!(
            RestClient::new("not a url"),
            Err(TransportError::Url(_))
        ));
        assert_eq!(path_segment("ab-C_1"), "ab-C_1");
        assert_eq!(path_segment("../x"), "%2E%2E%2Fx");
    }

    #[test]
    fn debug_hides_token() {
        let r = RestClient::new("http://localhost").unwrap();
        r.set_token(Some(Zeroizing::new("secret-token-value".into())));
        let d = format!("{r:?}");
        assert!(!d.contains("secret-token-value"), "{d}");
        assert!(d.contains("logged_in: true"));
    }
}
