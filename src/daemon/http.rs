//! The HTTP API (axum): reads the store, never the pipeline's state, so it answers the same
//! during a burst and after a restart.
//!
//! | route | answer |
//! |---|---|
//! | `GET /events?limit=N` | JSON list of event summaries, newest first (default 100, at most 10000) |
//! | `GET /events/{id}` | JSON event: picks, every origin version, preferred = the latest |
//! | `GET /events/{id}/quakeml` | QuakeML 1.2 of the event |
//! | `GET /events/{id}/posterior` | JSON posterior particles of the latest origin (lat, lon, depth km, dt s) |
//! | `GET /healthz` | JSON status and counts |
//! | `GET /metrics` | Prometheus text exposition |

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use crate::metrics::Metrics;
use crate::publish::RenderFn;
use crate::store::{Store, StoreError};

/// What every handler shares.
#[derive(Clone)]
pub struct ApiState {
    /// The event store.
    pub store: Store,
    /// The metrics registry.
    pub metrics: Metrics,
    /// Renders an event as QuakeML.
    pub quakeml: RenderFn,
}

/// The API router.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/events", get(list_events))
        .route("/events/{id}", get(get_event))
        .route("/events/{id}/quakeml", get(get_quakeml))
        .route("/events/{id}/posterior", get(get_posterior))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

fn internal(e: impl std::fmt::Display) -> Response {
    tracing::error!("http: {e}");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        Json(serde_json::json!({ "error": e.to_string() })),
    )
        .into_response()
}

fn not_found(id: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(serde_json::json!({ "error": format!("no event {id:?}") })),
    )
        .into_response()
}

/// Runs a store query on the blocking pool (SQLite calls block).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, Response> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(internal(e)),
        Err(e) => Err(internal(e)),
    }
}

async fn list_events(
    State(s): State<ApiState>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let limit = match q.get("limit").map(|l| l.parse::<usize>()) {
        None => 100,
        Some(Ok(n)) => n.min(10_000),
        Some(Err(_)) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(serde_json::json!({ "error": "limit must be a non-negative integer" })),
            )
                .into_response()
        }
    };
    match blocking(move || s.store.list_events(limit)).await {
        Ok(v) => Json(v).into_response(),
        Err(r) => r,
    }
}

async fn get_event(State(s): State<ApiState>, Path(id): Path<String>) -> Response {
    let key = id.clone();
    match blocking(move || s.store.event(&key)).await {
        Ok(Some(e)) => Json(e).into_response(),
        Ok(None) => not_found(&id),
        Err(r) => r,
    }
}

async fn get_quakeml(State(s): State<ApiState>, Path(id): Path<String>) -> Response {
    let key = id.clone();
    let render = s.quakeml;
    match blocking(move || s.store.event(&key)).await {
        Ok(Some(e)) => match render(&e) {
            Ok(xml) => ([(header::CONTENT_TYPE, "application/xml")], xml).into_response(),
            Err(m) => internal(m),
        },
        Ok(None) => not_found(&id),
        Err(r) => r,
    }
}

async fn get_posterior(State(s): State<ApiState>, Path(id): Path<String>) -> Response {
    let key = id.clone();
    match blocking(move || s.store.latest_particles(&key)).await {
        Ok(Some(p)) => Json(serde_json::json!({
            "origin_id": p.origin_id,
            "columns": ["lat_deg", "lon_deg", "depth_km", "time_offset_s"],
            "particles": p.rows,
        }))
        .into_response(),
        Ok(None) => not_found(&id),
        Err(r) => r,
    }
}

async fn healthz(State(s): State<ApiState>) -> Response {
    let start = s.metrics.start_time_s();
    match blocking(move || s.store.counts()).await {
        Ok((events, origins, picks)) => Json(serde_json::json!({
            "status": "ok",
            "uptime_s": crate::metrics::unix_now_s() - start,
            "events": events,
            "origins": origins,
            "picks": picks,
        }))
        .into_response(),
        Err(r) => r,
    }
}

async fn metrics(State(s): State<ApiState>) -> Response {
    (
        [(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)],
        s.metrics.render(),
    )
        .into_response()
}
