//! Encrypted media: the body is streamed to a file (never held whole in
//! memory), bounded by `media_max_bytes`; downloads stream the file back.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chat_proto::rest::{ErrorCode, MediaUploaded};
use chat_proto::validate;
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use super::Path;
use crate::auth::{AuthUser, now_ms};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

fn too_large(max: u64) -> ApiError {
    ApiError::new(
        ErrorCode::TooLarge,
        format!("media larger than {max} bytes"),
    )
}

fn io_error(e: std::io::Error) -> ApiError {
    tracing::error!(error = %e, "media io");
    match e.kind() {
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::FileTooLarge => ApiError::new(
            ErrorCode::Unavailable,
            "the server's storage is full; try again later",
        ),
        _ => ApiError::new(ErrorCode::Internal, "could not store the upload"),
    }
}

pub(super) async fn upload(
    State(state): State<Arc<AppState>>,
    me: AuthUser,
    req: Request,
) -> ApiResult<(StatusCode, axum::Json<MediaUploaded>)> {
    let max = state.config.media_max_bytes;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > max) {
        return Err(too_large(max));
    }
    state.limit(&state.limits.uploads, &me.user.id)?;
    let _place = Reservation::take(&state, &me.user.id, declared.unwrap_or(max)).await?;
    let id = uuid::Uuid::new_v4().to_string();
    let final_path = state.media_dir.join(&id);
    let tmp_path = state.media_dir.join(format!("{id}.part"));
    let mut file = tokio::fs::File::create(&tmp_path).await.map_err(io_error)?;
    let deadline = Duration::from_secs(state.config.upload_timeout_secs.max(1));
    let written = tokio::time::timeout(deadline, receive(req, &mut file, max)).await;
    let size = match written {
        Ok(Ok(size)) => size,
        Ok(Err(e)) => {
            drop(file);
            let _ = tokio::fs::remove_file(&tmp_path).await;
            return Err(e);
        }
        Err(_) => {
            drop(file);
            let _ = tokio::fs::remove_file(&tmp_path).await;
            return Err(ApiError::timeout("the upload"));
        }
    };
    if size == 0 {
        let _ = tokio::fs::remove_file(&tmp_path).await;
        return Err(ApiError::bad_request("empty upload"));
    }
    file.sync_all().await.map_err(io_error)?;
    drop(file);
    tokio::fs::rename(&tmp_path, &final_path)
        .await
        .map_err(io_error)?;
    state
        .store
        .insert_media(&id, &me.user.id, size, now_ms())
        .await?;
    Ok((StatusCode::CREATED, axum::Json(MediaUploaded { id, size })))
}

/// A place under the account's daily media quota, held while its upload
/// runs (and until its row is committed, so the usage query sees it).
struct Reservation<'a> {
    state: &'a AppState,
    user: String,
    bytes: u64,
}

impl<'a> Reservation<'a> {
    /// Checks the quota (the last 24 hours' uploads plus those under way)
    /// and reserves `bytes` and one file, or says when room frees up.
    async fn take(state: &'a AppState, user: &str, bytes: u64) -> ApiResult<Reservation<'a>> {
        let c = &state.config;
        let day = 86_400_000;
        let now = now_ms();
        let _gate = state.quota_gate.lock().await;
        // Those under way first, then the stored ones: an upload that
        // commits in between is counted twice (safe), never not at all.
        let (busy_bytes, busy_files) = state
            .uploads_in_flight
            .lock()
            .map(|m| m.get(user).copied().unwrap_or_default())
            .unwrap_or_default();
        let used = state.store.media_usage(user, now - day).await?;
        let over_files = used.files + busy_files + 1 > c.media_quota_files_per_day;
        let over_bytes = used.bytes + busy_bytes + bytes > c.media_quota_bytes_per_day;
        if over_files || over_bytes {
            let wait_ms = used.oldest.map_or(60_000, |t| (t + day - now).max(1_000));
            let what = if over_files {
                format!("{} files", c.media_quota_files_per_day)
            } else {
                format!("{} bytes", c.media_quota_bytes_per_day)
            };
            return Err(ApiError {
                retry_after: Some(Duration::from_millis(wait_ms as u64)),
                ..ApiError::new(
                    ErrorCode::QuotaExceeded,
                    format!("media quota reached: at most {what} a day"),
                )
            });
        }
        if let Ok(mut m) = state.uploads_in_flight.lock() {
            let e = m.entry(user.to_owned()).or_default();
            e.0 += bytes;
            e.1 += 1;
        }
        Ok(Reservation {
            state,
            user: user.to_owned(),
            bytes,
        })
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if let Ok(mut m) = self.state.uploads_in_flight.lock()
            && let Some(e) = m.get_mut(&self.user)
        {
            e.0 = e.0.saturating_sub(self.bytes);
            e.1 = e.1.saturating_sub(1);
            if e.1 == 0 {
                m.remove(&self.user);
            }
        }
    }
}

/// Streams the body into `file`: its size, or why it stopped.
async fn receive(req: Request, file: &mut tokio::fs::File, max: u64) -> ApiResult<u64> {
    let mut size: u64 = 0;
    let mut stream = req.into_body().into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            if super::body_timed_out(&e) {
                ApiError::timeout("the upload body")
            } else if super::caused_by::<http_body_util::LengthLimitError>(&e) {
                too_large(max)
            } else {
                ApiError::bad_request("the upload was interrupted")
            }
        })?;
        size += chunk.len() as u64;
        if size > max {
            return Err(too_large(max));
        }
        file.write_all(&chunk).await.map_err(io_error)?;
    }
    Ok(size)
}

pub(super) async fn download(
    State(state): State<Arc<AppState>>,
    _me: AuthUser,
    Path(media_id): Path<String>,
) -> ApiResult<Response> {
    validate::id(&media_id, "mediaId")?;
    let size = state
        .store
        .media_size(&media_id)
        .await?
        .ok_or_else(|| ApiError::not_found("media"))?;
    let file = tokio::fs::File::open(state.media_dir.join(&media_id))
        .await
        .map_err(|_| ApiError::not_found("media"))?;
    let stream = tokio_util_stream(file);
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_LENGTH, size.to_string()),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

/// Reads a file as a stream of 64 KiB chunks.
fn tokio_util_stream(
    file: tokio::fs::File,
) -> impl futures_util::Stream<Item = std::io::Result<Vec<u8>>> {
    futures_util::stream::unfold(file, |mut f| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 64 * 1024];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(buf), f))
            }
            Err(e) => Some((Err(e), f)),
        }
    })
}
