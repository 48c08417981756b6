//! REST handlers, one module per resource, and the router.

mod accounts;
mod groups;
mod media;
mod messages;
mod prekeys;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::response::IntoResponse;
use axum::routing::{delete, get, post, put};
use chat_proto::rest::Health;
use chat_proto::validate::JSON_BODY_MAX;
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::state::AppState;

/// A JSON body whose rejection is our error type (clear message, 400/413).
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Json(v)),
            Err(e) => {
                let status = e.status();
                if status == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    Err(ApiError::new(
                        chat_proto::rest::ErrorCode::TooLarge,
                        "request body too large",
                    ))
                } else {
                    Err(ApiError::bad_request(e.body_text()))
                }
            }
        }
    }
}

/// Path parameters whose rejection (a segment that is not UTF-8, a missing
/// one) is our JSON error body, not axum's plain text.
pub struct Path<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Path(v)),
            Err(e) => Err(ApiError::bad_request(format!(
                "bad path: {}",
                e.body_text()
            ))),
        }
    }
}

/// The whole HTTP surface.
pub fn router(state: Arc<AppState>) -> Router {
    let media_limit = usize::try_from(state.config.media_max_bytes).unwrap_or(usize::MAX);
    let api = Router::new()
        .route("/api/auth/register", post(accounts::register))
        .route("/api/auth/login", post(accounts::login))
        .route("/api/auth/logout", post(accounts::logout))
        .route("/api/users", get(accounts::list_users))
        .route("/api/users/{user_id}", get(accounts::get_user))
        .route("/api/users/prekeys", post(prekeys::upload))
        .route("/api/users/prekeys/status", get(prekeys::status))
        .route("/api/users/prekeys/{key_id}", delete(prekeys::delete_one))
        .route("/api/users/{user_id}/prekeys", get(prekeys::claim))
        .route("/api/verify-key", post(accounts::verify_key))
        .route(
            "/api/verify-key/{user_id}",
            get(accounts::get_verification).delete(accounts::delete_verification),
        )
        .route("/api/messages/status", put(messages::update_status))
        .route("/api/messages/{peer_id}", get(messages::pending_from))
        .route("/api/groups", post(groups::create).get(groups::list))
        .route(
            "/api/groups/{group_id}",
            get(groups::get_one)
                .put(groups::update)
                .delete(groups::delete_group),
        )
        .route("/api/groups/{group_id}/members", post(groups::add_member))
        .route(
            "/api/groups/{group_id}/members/{user_id}",
            delete(groups::remove_member).put(groups::set_role),
        )
        .route("/api/groups/{group_id}/messages", get(groups::pending))
        .layer(DefaultBodyLimit::max(JSON_BODY_MAX));
    let media = Router::new()
        .route("/api/media", post(media::upload))
        .route("/api/media/{media_id}", get(media::download))
        .layer(DefaultBodyLimit::max(media_limit));
    Router::new()
        .merge(api)
        .merge(media)
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/ws", get(crate::ws::upgrade))
        .fallback(|| async { ApiError::not_found("route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                chat_proto::rest::ErrorCode::MethodNotAllowed,
                "method not allowed on this path",
            )
        })
        .with_state(state)
}

async fn health() -> axum::Json<Health> {
    axum::Json(Health {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
    })
}

async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let depth = state.store.queue_depth().await.unwrap_or(0);
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        state.metrics.render(depth),
    )
}
