//! The viewer's HTTP server: Jaeger's query API and otel-run's own paths under
//! `/api/`, and the UI's embedded files everywhere else (its `index.html` for
//! a path it does not have, so the UI's own routes load it).

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use super::assets;
use super::jaeger::{self, log_json};
use super::query::{self, Query};
use super::store::{Store, TraceId};

pub fn router(store: Arc<Store>) -> Router {
    Router::new()
        .route("/api/services", get(services))
        .route("/api/services/{service}/operations", get(operations))
        .route("/api/operations", get(operations_with_kinds))
        .route("/api/traces", get(traces))
        .route("/api/traces/{id}", get(trace))
        .route("/api/otel-run/summary", get(summary))
        .route("/api/otel-run/logs", get(logs))
        .route("/api/otel-run/metrics", get(metrics))
        .fallback(asset)
        .with_state(store)
}

/// Jaeger's envelope.
fn answer(data: Value, total: usize) -> Response {
    let body = json!({"data": data, "total": total, "limit": 0, "offset": 0, "errors": null});
    json_response(StatusCode::OK, &body)
}

fn json_response(code: StatusCode, body: &impl serde::Serialize) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    (code, [(header::CONTENT_TYPE, "application/json")], bytes).into_response()
}

fn error(code: StatusCode, message: &str) -> Response {
    let body = json!({
        "data": null, "total": 0, "limit": 0, "offset": 0,
        "errors": [{"code": code.as_u16(), "msg": message}],
    });
    json_response(code, &body)
}

async fn services(State(store): State<Arc<Store>>) -> Response {
    let names = query::services(&store);
    let total = names.len();
    answer(json!(names), total)
}

async fn operations(State(store): State<Arc<Store>>, Path(service): Path<String>) -> Response {
    let names: Vec<String> = query::operations(&store, &service).into_keys().collect();
    let total = names.len();
    answer(json!(names), total)
}

/// `/api/operations?service=&spanKind=`: each operation with its kind.
async fn operations_with_kinds(
    State(store): State<Arc<Store>>,
    RawQuery(raw): RawQuery,
) -> Response {
    let params: Vec<(String, String)> =
        url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let Some(service) = param("service") else {
        return error(StatusCode::BAD_REQUEST, "parameter 'service' is required");
    };
    let wanted = param("spanKind");
    let mut data = Vec::new();
    for (name, kinds) in query::operations(&store, &service) {
        for kind in kinds {
            let kind = kind_name(kind);
            if wanted.as_deref().is_none_or(|w| w == kind) {
                data.push(json!({"name": name, "spanKind": kind}));
            }
        }
    }
    let total = data.len();
    answer(Value::Array(data), total)
}

fn kind_name(kind: i32) -> &'static str {
    match kind {
        1 => "internal",
        2 => "server",
        3 => "client",
        4 => "producer",
        5 => "consumer",
        _ => "",
    }
}

async fn traces(State(store): State<Arc<Store>>, RawQuery(raw): RawQuery) -> Response {
    match Query::parse(&raw.unwrap_or_default()) {
        Ok(query) => {
            // Searching walks every span: off the runtime's workers.
            let found = tokio::task::spawn_blocking(move || query::search(&store, &query))
                .await
                .unwrap_or_default();
            answer(Value::Array(found), 0)
        }
        Err(message) => error(StatusCode::BAD_REQUEST, &message),
    }
}

fn trace_id(text: &str) -> Option<TraceId> {
    // Jaeger accepts IDs without their leading zeros.
    if text.is_empty() || text.len() > 32 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let padded = format!("{text:0>32}");
    let mut id = [0u8; 16];
    for (i, byte) in id.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&padded[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(id)
}

async fn trace(State(store): State<Arc<Store>>, Path(id): Path<String>) -> Response {
    let found = trace_id(&id)
        .and_then(|id| store.read(|traces| traces.get(&id).and_then(jaeger::trace_json)));
    match found {
        Some(trace) => answer(json!([trace]), 0),
        None => error(StatusCode::NOT_FOUND, "trace not found"),
    }
}

async fn summary(State(store): State<Arc<Store>>) -> Response {
    json_response(StatusCode::OK, &store.summary())
}

async fn logs(State(store): State<Arc<Store>>, RawQuery(raw): RawQuery) -> Response {
    let raw = raw.unwrap_or_default();
    let wanted = url::form_urlencoded::parse(raw.as_bytes())
        .find(|(k, _)| k == "traceID")
        .map(|(_, v)| v.into_owned());
    let id = match wanted.as_deref().map(trace_id) {
        Some(None) => return error(StatusCode::BAD_REQUEST, "malformed 'traceID' parameter"),
        Some(Some(id)) => Some(id),
        None => None,
    };
    let logs: Vec<Value> = store.logs(id.as_ref()).iter().map(log_json).collect();
    let total = logs.len();
    answer(Value::Array(logs), total)
}

async fn metrics(State(store): State<Arc<Store>>) -> Response {
    let data = store.metrics.to_json();
    let total = data.as_array().map_or(0, Vec::len);
    answer(data, total)
}

async fn asset(uri: Uri) -> Response {
    let path = uri.path();
    let found = assets::get(path).or_else(|| {
        // The UI's own routes are its page; an unknown API path is an error.
        (!path.starts_with("/api/")).then(|| assets::get("/index.html"))?
    });
    match found {
        Some(asset) => ([(header::CONTENT_TYPE, asset.content_type)], asset.body).into_response(),
        None => error(StatusCode::NOT_FOUND, "no such path"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_ids_parse_with_or_without_leading_zeros() {
        let mut id = [0u8; 16];
        id[15] = 0xab;
        assert_eq!(trace_id("ab"), Some(id));
        assert_eq!(trace_id(&format!("{:032x}", 0xab)), Some(id));
        assert_eq!(trace_id("xyz"), None);
        assert_eq!(trace_id(""), None);
    }
}
