//! REST handlers, one module per resource, and the router.

mod accounts;
pub(crate) mod devices;
mod group_changes;
mod groups;
mod media;
mod messages;
mod prekeys;

use std::sync::Arc;

use axum::Router;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, FromRequest, MatchedPath, Request, State};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use chat_proto::rest::Health;
use chat_proto::validate::JSON_BODY_MAX;
use serde::de::DeserializeOwned;
use tower_http::timeout::TimeoutBody;

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
                if body_timed_out(&e) {
                    Err(ApiError::timeout("the request body"))
                } else if status == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
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

/// Whether `e` (or what caused it) is the body idle deadline.
pub(crate) fn body_timed_out(e: &(dyn std::error::Error + 'static)) -> bool {
    caused_by::<tower_http::timeout::TimeoutError>(e)
}

/// Whether `e`, or any error in its source chain, is an `E`.
pub(crate) fn caused_by<E: std::error::Error + 'static>(
    e: &(dyn std::error::Error + 'static),
) -> bool {
    std::iter::successors(Some(e), |err| err.source()).any(|err| err.is::<E>())
}

/// Every request: its body fails after `body_idle_timeout_secs` without a
/// byte, and it is recorded in the latency histogram by route.
async fn observe(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let idle = Duration::from_secs(state.config.body_idle_timeout_secs.max(1));
    let req = req.map(|b| Body::new(TimeoutBody::new(idle, b)));
    let resp = next.run(req).await;
    state.metrics.observe_request(
        method.as_str(),
        &route,
        resp.status().as_u16(),
        started.elapsed(),
    );
    resp
}

/// REST requests (not uploads) are answered within
/// `request_timeout_secs`, body included, or get 408 `timeout`.
async fn deadline(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let limit = Duration::from_secs(state.config.request_timeout_secs.max(1));
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => ApiError::timeout("the request").into_response(),
    }
}

/// An axum extractor whose rejection is our JSON error body (400, with
/// `$what` and axum's explanation), not axum's plain text.
macro_rules! json_rejecting {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        pub struct $name<T>(pub T);

        impl<T, S> axum::extract::FromRequestParts<S> for $name<T>
        where
            T: DeserializeOwned + Send,
            S: Send + Sync,
        {
            type Rejection = ApiError;

            async fn from_request_parts(
                parts: &mut axum::http::request::Parts,
                state: &S,
            ) -> Result<Self, ApiError> {
                match axum::extract::$name::<T>::from_request_parts(parts, state).await {
                    Ok(axum::extract::$name(v)) => Ok($name(v)),
                    Err(e) => Err(ApiError::bad_request(format!(
                        concat!($what, ": {}"),
                        e.body_text()
                    ))),
                }
            }
        }
    };
}

json_rejecting!(
    /// Path parameters (a segment that is not UTF-8, a missing one).
    Path,
    "bad path"
);
json_rejecting!(
    /// A query string (`?after=abc`, a number out of range).
    Query,
    "bad query"
);

/// The whole HTTP surface.
pub fn router(state: Arc<AppState>) -> Router {
    let media_limit = usize::try_from(state.config.media_max_bytes).unwrap_or(usize::MAX);
    let api = Router::new()
        .route("/api/auth/register", post(accounts::register))
        .route("/api/auth/login", post(accounts::login))
        .route("/api/auth/logout", post(accounts::logout))
        .route("/api/users", get(accounts::list_users))
        .route("/api/users/{user_id}", get(accounts::get_user))
        .route(
            "/api/users/prekeys",
            post(prekeys::upload).layer(DefaultBodyLimit::max(
                chat_proto::validate::PREKEY_UPLOAD_BODY_MAX,
            )),
        )
        .route("/api/users/prekeys/status", get(prekeys::status))
        .route("/api/users/prekeys/{key_id}", delete(prekeys::delete_one))
        .route("/api/users/{user_id}/prekeys", get(prekeys::claim))
        .route(
            "/api/users/{user_id}/devices/prekeys",
            get(prekeys::claim_devices),
        )
        .route(
            "/api/users/{user_id}/devices/{device_id}/prekeys",
            get(prekeys::claim_device),
        )
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
        .route(
            "/api/groups/{group_id}/changes",
            post(group_changes::post).get(group_changes::list),
        )
        .route("/api/devices", get(devices::list).post(devices::link))
        .route("/api/devices/link-token", post(devices::link_token))
        .route("/api/devices/{device_id}", delete(devices::remove))
        .route("/api/provisioning/{address}", put(devices::provision))
        .route("/health", get(health))
        .route("/health/ready", get(ready))
        .route("/ws", get(crate::ws::upgrade))
        .route("/ws/provision", get(crate::provision::upgrade))
        .layer(DefaultBodyLimit::max(JSON_BODY_MAX))
        .layer(from_fn_with_state(state.clone(), deadline));
    let media = Router::new()
        .route("/api/media", post(media::upload))
        .route("/api/media/{media_id}", get(media::download))
        .layer(DefaultBodyLimit::max(media_limit));
    let api = if state.config.metrics_public {
        api.route("/metrics", get(metrics))
    } else {
        api
    };
    Router::new()
        .merge(api)
        .merge(media)
        .fallback(|| async { ApiError::not_found("route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                chat_proto::rest::ErrorCode::MethodNotAllowed,
                "method not allowed on this path",
            )
        })
        .layer(from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// The admin listener: `/metrics` and `/health` only.
pub fn admin_router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/health/ready", get(ready))
        .route("/metrics", get(metrics))
        .fallback(|| async { ApiError::not_found("route") })
        .with_state(state)
}

async fn health() -> axum::Json<Health> {
    axum::Json(Health {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
    })
}

/// Most a readiness check waits for the database.
const READY_WAIT: Duration = Duration::from_secs(2);

/// `GET /health/ready`: 200 when this node can serve (its database
/// answers, and NATS is connected in a cluster), else 503 saying what is
/// missing. `/health` stays the cheap liveness check.
async fn ready(State(state): State<Arc<AppState>>) -> Response {
    let db = matches!(
        tokio::time::timeout(READY_WAIT, state.store.ping()).await,
        Ok(Ok(()))
    );
    let nats = state.cluster.as_ref().is_none_or(|c| c.connected());
    let body = axum::Json(serde_json::json!({
        "status": if db && nats { "ready" } else { "unavailable" },
        "database": if db { "ok" } else { "unreachable" },
        "nats": match &state.cluster {
            None => "not used",
            Some(_) if nats => "ok",
            Some(_) => "unreachable",
        },
    }));
    let status = if db && nats {
        axum::http::StatusCode::OK
    } else {
        axum::http::StatusCode::SERVICE_UNAVAILABLE
    };
    (status, body).into_response()
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
