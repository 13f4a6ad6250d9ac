//! The REST shim: the seed's FastAPI endpoints, with response shapes its
//! clients understand, over the same [`PeerStore`] as the gRPC service.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::body_cache::BodyCache;
use super::errors::{self, ApiError, HttpError};
use super::validate;
use crate::net::RemoteAddr;
use crate::store::{
    self, Credential, EndpointKind, ListQuery, Page, PeerRecord, PeerStore, RegisteredVia,
    Registration,
};
use p2pchat::PeerId;

/// Name reported by `GET /`, as in the seed.
pub const SERVICE_NAME: &str = "P2P Chat Signaling Server";

/// The REST routes, ready to merge with the gRPC routes.
pub fn router(store: Arc<dyn PeerStore>) -> Router {
    // The listings every client polls: built once per store version and
    // shared (see `body_cache`).
    let peers = Arc::new(BodyCache::new(store.clone(), all_peers(false), peers_json));
    let status = Arc::new(BodyCache::new(store.clone(), all_peers(true), status_json));
    Router::new()
        .route("/", get(root))
        .route("/register", axum::routing::post(register))
        .route("/peer/{peer_id}", get(get_peer).delete(delete_peer))
        .route("/peers", get(move |h: HeaderMap| listing(peers, h)))
        .route("/status", get(move |h: HeaderMap| listing(status, h)))
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .with_state(store)
}

type AppState = State<Arc<dyn PeerStore>>;

fn detail(status: StatusCode, message: impl Into<String>) -> HttpError {
    HttpError::detail(status, message)
}

async fn root(State(store): AppState) -> Result<Json<Value>, HttpError> {
    Ok(Json(json!({
        "service": SERVICE_NAME,
        "status": "running",
        "peers_online": store.counts().await?.online,
    })))
}

/// One FastAPI/pydantic-style validation error entry.
fn field_error(kind: &str, field: &str, msg: impl Into<String>) -> Value {
    json!({ "type": kind, "loc": ["body", field], "msg": msg.into() })
}

fn unprocessable(errors: Vec<Value>) -> HttpError {
    HttpError::unprocessable(errors)
}

/// The fields of `POST /register`, checked one by one so every problem is
/// reported at once, as FastAPI does.
struct RegisterBody {
    peer_id: String,
    username: Option<String>,
    port: i64,
    token: Option<String>,
    endpoints: Vec<(String, i64)>,
}

fn parse_register_body(body: &[u8]) -> Result<RegisterBody, HttpError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        unprocessable(vec![json!({
            "type": "json_invalid",
            "loc": ["body", e.column()],
            "msg": format!("JSON decode error: {e}"),
        })])
    })?;
    let Value::Object(obj) = value else {
        return Err(unprocessable(vec![json!({
            "type": "model_attributes_type",
            "loc": ["body"],
            "msg": "Input should be a valid dictionary or object",
        })]));
    };
    let mut errors = Vec::new();
    let peer_id = string_field(&obj, "peer_id", true, &mut errors).unwrap_or_default();
    let username = string_field(&obj, "username", false, &mut errors);
    let port = match obj.get("port") {
        None | Some(Value::Null) => {
            errors.push(field_error("missing", "port", "Field required"));
            0
        }
        Some(Value::Number(n)) if n.as_i64().is_some() => n.as_i64().unwrap_or(0),
        Some(_) => {
            errors.push(field_error(
                "int_type",
                "port",
                "Input should be a valid integer",
            ));
            0
        }
    };
    let token = string_field(&obj, "token", false, &mut errors);
    let endpoints = endpoints_field(&obj, &mut errors);
    if !errors.is_empty() {
        return Err(unprocessable(errors));
    }
    Ok(RegisterBody {
        peer_id,
        username,
        port,
        token,
        endpoints,
    })
}

/// A string field of the body; a missing `required` one or a non-string
/// adds its FastAPI-style error to `errors`.
fn string_field(
    obj: &serde_json::Map<String, Value>,
    field: &str,
    required: bool,
    errors: &mut Vec<Value>,
) -> Option<String> {
    match obj.get(field) {
        None | Some(Value::Null) => {
            if required {
                errors.push(field_error("missing", field, "Field required"));
            }
            None
        }
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            errors.push(field_error(
                "string_type",
                field,
                "Input should be a valid string",
            ));
            None
        }
    }
}

/// The optional `endpoints` list: `{"ip": string, "port": integer}` objects.
fn endpoints_field(
    obj: &serde_json::Map<String, Value>,
    errors: &mut Vec<Value>,
) -> Vec<(String, i64)> {
    let mut endpoints = Vec::new();
    match obj.get("endpoints") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for item in items {
                match (
                    item.get("ip").and_then(Value::as_str),
                    item.get("port").and_then(Value::as_i64),
                ) {
                    (Some(ip), Some(port)) => endpoints.push((ip.to_owned(), port)),
                    _ => errors.push(field_error(
                        "model_type",
                        "endpoints",
                        "each endpoint must be an object {\"ip\": string, \"port\": integer}",
                    )),
                }
            }
        }
        Some(_) => errors.push(field_error(
            "list_type",
            "endpoints",
            "Input should be a valid list",
        )),
    }
    endpoints
}

/// The token of a request: `Authorization: Bearer <token>` first, then the
/// given fallback (body field or query parameter).
fn bearer_token(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))?;
    Some(token.trim().to_owned())
}

/// Whether the request says its body is JSON (`application/json`, any
/// parameters such as `charset=utf-8`). Anything else is refused: a web
/// page can POST `text/plain` or a form to any address without asking (no
/// CORS preflight), but not `application/json`, so this keeps pages a user
/// visits from registering peers on a LAN or localhost server.
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

/// Every field check of one request, so a body with several bad values
/// gets all of them in one 422 (as FastAPI lists every problem).
#[derive(Default)]
struct FieldChecks {
    errors: Vec<Value>,
    /// A refusal that is not about one field's value, if any.
    other: Option<ApiError>,
}

impl FieldChecks {
    /// The value, or `None` with its problem recorded.
    fn take<T>(&mut self, checked: Result<T, ApiError>) -> Option<T> {
        match checked {
            Ok(value) => Some(value),
            Err(ApiError::InvalidArgument { field, message }) => {
                self.errors.push(field_error("value_error", field, message));
                None
            }
            Err(other) => {
                self.other.get_or_insert(other);
                None
            }
        }
    }

    /// The recorded problems as one error, if there were any.
    fn finish(self) -> Result<(), HttpError> {
        match (self.other, self.errors.is_empty()) {
            (Some(other), _) => Err(other.into()),
            (None, false) => Err(unprocessable(self.errors)),
            (None, true) => Ok(()),
        }
    }
}

fn body_rejection(rejection: BytesRejection) -> HttpError {
    let status = rejection.status();
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        detail(
            status,
            "request body is larger than the server's limit (--max-body-bytes)",
        )
    } else {
        detail(status, rejection.body_text())
    }
}

async fn register(
    State(store): AppState,
    Extension(RemoteAddr(remote)): Extension<RemoteAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, HttpError> {
    if !is_json(&headers) {
        return Err(HttpError::unsupported_media_type());
    }
    let body = body.map_err(body_rejection)?;
    let fields = parse_register_body(&body)?;
    let mut checks = FieldChecks::default();
    let peer_id = checks.take(validate::peer_id("peer_id", &fields.peer_id));
    let username = checks.take(validate::username(fields.username.as_deref().unwrap_or("")));
    let udp_port = checks.take(validate::port("port", fields.port));
    let mut endpoints = Vec::with_capacity(fields.endpoints.len());
    for (ip, port) in &fields.endpoints {
        let ip = checks.take(validate::ip("endpoints.ip", ip));
        let port = checks.take(validate::port("endpoints.port", *port));
        if let (Some(ip), Some(port)) = (ip, port) {
            endpoints.push(store::Endpoint {
                addr: SocketAddr::new(ip, port),
                kind: EndpointKind::Local,
            });
        }
    }
    checks.finish()?;
    let (Some(peer_id), Some(username), Some(udp_port)) = (peer_id, username, udp_port) else {
        return Err(detail(StatusCode::UNPROCESSABLE_ENTITY, "invalid body"));
    };
    if peer_id.is_key_derived() {
        // Only gRPC carries a proof of the key; over REST anyone could
        // claim a key-derived id.
        return Err(ApiError::ProofRequired.into());
    }
    let observed_ip = remote.ip().to_canonical();
    let token = bearer_token(&headers).or(fields.token);
    let registered = store
        .register(Registration {
            peer_id,
            username,
            udp_port,
            endpoints,
            token: token.as_deref().map(Credential::parse),
            public_key: None,
            observed_ip,
            via: RegisteredVia::Rest,
        })
        .await?;
    tracing::debug!(peer_id = %peer_id, username = %registered.peer.username, "registered over REST");
    Ok(Json(json!({
        "status": "success",
        "message": "Peer registered successfully",
        "peer_id": peer_id.to_string(),
        "public_ip": observed_ip.to_string(),
        "token": registered.token.to_hex(),
        "lease_seconds": registered.lease.as_secs(),
    })))
}

/// Looks a peer up by a path id; ids that are not UUIDs cannot be registered,
/// so they are simply not found (as on the seed's server).
async fn lookup(store: &dyn PeerStore, text: &str) -> Result<Arc<PeerRecord>, HttpError> {
    let id = uuid::Uuid::parse_str(text)
        .map(PeerId::from)
        .map_err(|_| HttpError::from(ApiError::NotFound))?;
    Ok(store.get(&id).await?)
}

async fn get_peer(
    State(store): AppState,
    Path(peer_id): Path<String>,
) -> Result<Json<Value>, HttpError> {
    let peer = lookup(&*store, &peer_id).await?;
    if !peer.online {
        return Err(detail(StatusCode::NOT_FOUND, "Peer is offline"));
    }
    Ok(Json(json!({
        "peer_id": peer.peer_id.to_string(),
        "username": peer.username,
        "ip": peer.observed_ip.to_string(),
        "port": peer.udp_port,
        "public_key": peer.public_key.map(|k| k.to_base64()),
    })))
}

#[derive(Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

async fn delete_peer(
    State(store): AppState,
    Path(peer_id): Path<String>,
    headers: HeaderMap,
    Query(query): Query<TokenQuery>,
) -> Result<Json<Value>, HttpError> {
    let peer = lookup(&*store, &peer_id).await?;
    let Some(token) = bearer_token(&headers).or(query.token) else {
        return Err(detail(
            StatusCode::FORBIDDEN,
            "session token required: send 'Authorization: Bearer <token>' from POST /register",
        ));
    };
    store
        .unregister(&peer.peer_id, &Credential::parse(&token))
        .await?;
    tracing::debug!(peer_id = %peer.peer_id, "unregistered over REST");
    Ok(Json(
        json!({ "status": "success", "message": "Peer unregistered" }),
    ))
}

/// One entry of `GET /peers`, serialized straight from the record (no
/// intermediate `Value`: listing 1,000 peers is this endpoint's hot path).
#[derive(Serialize)]
struct PeerEntry<'a> {
    peer_id: PeerId,
    username: &'a str,
    ip: std::net::IpAddr,
    port: u16,
    online: bool,
    last_seen: f64,
    /// Standard base64 of the peer's proven Ed25519 key; null for peers
    /// registered without one.
    public_key: Option<String>,
}

#[derive(Serialize)]
struct PeerList<'a> {
    peers: Vec<PeerEntry<'a>>,
    count: usize,
}

/// `GET /peers` and `GET /status`: the shared body of the current store
/// version (ETag, 304, gzip: see `body_cache`).
async fn listing(cache: Arc<BodyCache>, headers: HeaderMap) -> Result<Response, HttpError> {
    Ok(cache.respond(&headers).await?)
}

/// The `GET /peers` body: the online peers (the seed's shape).
fn peers_json(page: &Page) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(&PeerList {
        peers: page
            .peers
            .iter()
            .map(|p| PeerEntry {
                peer_id: p.peer_id,
                username: &p.username,
                ip: p.observed_ip,
                port: p.udp_port,
                online: p.online,
                last_seen: p.last_seen_unix(),
                public_key: p.public_key.map(|k| k.to_base64()),
            })
            .collect(),
        count: page.total,
    })
}

/// A query for every record at once (the seed's endpoints do not page).
fn all_peers(include_offline: bool) -> ListQuery {
    ListQuery {
        after: None,
        limit: usize::MAX,
        include_offline,
    }
}

#[derive(Serialize)]
struct StatusEntry<'a> {
    peer_id: PeerId,
    username: &'a str,
    online: bool,
}

#[derive(Serialize)]
struct StatusBody<'a> {
    status: &'static str,
    total_peers: usize,
    online_peers: usize,
    peer_list: Vec<StatusEntry<'a>>,
}

/// The `GET /status` body: every record, offline ones included (the
/// seed's shape).
fn status_json(page: &Page) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(&StatusBody {
        status: "running",
        total_peers: page.total,
        online_peers: page.peers.iter().filter(|p| p.online).count(),
        peer_list: page
            .peers
            .iter()
            .map(|p| StatusEntry {
                peer_id: p.peer_id,
                username: &p.username,
                online: p.online,
            })
            .collect(),
    })
}

async fn method_not_allowed() -> HttpError {
    detail(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed")
}

/// Unknown paths: gRPC callers get UNIMPLEMENTED, everyone else FastAPI's 404.
async fn not_found(headers: HeaderMap) -> Response {
    let is_grpc = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"));
    if is_grpc {
        errors::unknown_grpc_method()
    } else {
        detail(StatusCode::NOT_FOUND, "Not Found").into_response()
    }
}
