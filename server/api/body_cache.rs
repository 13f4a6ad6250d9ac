//! Response bodies built once per store version and shared by every
//! request, for the REST listings (`GET /peers`, `GET /status`) that every
//! client polls and that grow with the registry.
//!
//! Before, each request serialized its own copy, so 100 clients that never
//! read their response held 100 copies. Now a body is serialized once per
//! [`StoreCounts::version`](crate::store::StoreCounts::version) into [`Bytes`] that every response clones (a
//! reference count, not a copy), its gzip form is compressed at most once
//! per version on first demand, and the version is the body's `ETag`: a
//! client that sends it back in `If-None-Match` gets `304 Not Modified`
//! with no body.

use std::io::Write;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use flate2::Compression;
use flate2::write::GzEncoder;
use headers::{ETag, HeaderMapExt, IfNoneMatch};

use super::errors::ApiError;
use crate::store::{ListQuery, Page, PeerStore};

/// Serializes a page into a body (one of the seed's JSON shapes).
pub type BuildBody = fn(&Page) -> Result<Vec<u8>, serde_json::Error>;

/// One body at one store version, in both encodings.
#[derive(Debug)]
struct SharedBody {
    version: u64,
    identity: Bytes,
    identity_tag: ETag,
    /// Built on the first request that accepts gzip.
    gzip: tokio::sync::OnceCell<Option<Bytes>>,
    gzip_tag: ETag,
}

/// The cached body of one endpoint: the listing `query` serialized by
/// `build`, rebuilt when the store's version moves.
pub struct BodyCache {
    store: Arc<dyn PeerStore>,
    query: ListQuery,
    build: BuildBody,
    current: Mutex<Option<Arc<SharedBody>>>,
    /// One rebuild at a time: requests arriving during it wait and share it.
    rebuilding: tokio::sync::Mutex<()>,
}

impl BodyCache {
    /// A cache of `build(store.list(query))`.
    pub fn new(store: Arc<dyn PeerStore>, query: ListQuery, build: BuildBody) -> BodyCache {
        BodyCache {
            store,
            query,
            build,
            current: Mutex::new(None),
            rebuilding: tokio::sync::Mutex::new(()),
        }
    }

    /// The cached body if it is at `version` or newer (versions only
    /// grow): a request never gets a listing older than itself.
    fn cached(&self, version: u64) -> Option<Arc<SharedBody>> {
        let current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        current.as_ref().filter(|b| b.version >= version).cloned()
    }

    /// The body at the store's current version, built if needed.
    async fn body(&self) -> Result<Arc<SharedBody>, ApiError> {
        let version = self.store.counts().await?.version;
        if let Some(body) = self.cached(version) {
            return Ok(body);
        }
        let _one_builder = self.rebuilding.lock().await;
        if let Some(body) = self.cached(version) {
            // Built while this request waited: under a registration flood
            // requests share rebuilds instead of queueing one each.
            return Ok(body);
        }
        let page = self.store.list(self.query).await?;
        let build = self.build;
        // Hundreds of milliseconds at 100k peers: off the async workers.
        let json =
            tokio::task::spawn_blocking(move || build(&page).map(|json| (page.version, json)))
                .await
                .map_err(|e| ApiError::Unavailable(format!("building the listing failed: {e}")))?
                .map_err(|e| ApiError::Unavailable(format!("building the listing failed: {e}")))?;
        let (version, json) = json;
        let body = Arc::new(SharedBody {
            version,
            identity: Bytes::from(json),
            identity_tag: etag(version, "")?,
            gzip: tokio::sync::OnceCell::new(),
            gzip_tag: etag(version, "-gzip")?,
        });
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Some(body.clone());
        Ok(body)
    }

    /// The response to a GET with `request` headers: 304 when
    /// `If-None-Match` names the current version, else the JSON body,
    /// gzipped when the client accepts gzip.
    pub async fn respond(&self, request: &HeaderMap) -> Result<Response, ApiError> {
        let body = self.body().await?;
        let wants_gzip = accepts_gzip(request);
        // Either encoding's tag names the same version of the listing.
        let not_modified = request.typed_get::<IfNoneMatch>().is_some_and(|inm| {
            !inm.precondition_passes(&body.identity_tag) || !inm.precondition_passes(&body.gzip_tag)
        });
        let builder = Response::builder()
            .header(header::VARY, HeaderValue::from_static("accept-encoding"))
            .header(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        let response = if not_modified {
            let tag = if wants_gzip {
                &body.gzip_tag
            } else {
                &body.identity_tag
            };
            with_tag(builder, tag)
                .status(StatusCode::NOT_MODIFIED)
                .body(Body::empty())
        } else {
            let builder = builder.header(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            let gzip = if wants_gzip { body.gzip().await } else { None };
            match gzip {
                Some(gzip) => with_tag(builder, &body.gzip_tag)
                    .header(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"))
                    .body(Body::from(gzip)),
                None => {
                    with_tag(builder, &body.identity_tag).body(Body::from(body.identity.clone()))
                }
            }
        };
        response.map_err(|e| ApiError::Unavailable(format!("building the response failed: {e}")))
    }
}

impl SharedBody {
    /// The gzip form, compressed by the first request that wants it;
    /// `None` when compression failed (the body is then sent as is).
    async fn gzip(&self) -> Option<Bytes> {
        self.gzip
            .get_or_init(|| async {
                let identity = self.identity.clone();
                tokio::task::spawn_blocking(move || gzip(&identity))
                    .await
                    .ok()
                    .flatten()
            })
            .await
            .clone()
    }
}

fn with_tag(
    mut builder: axum::http::response::Builder,
    tag: &ETag,
) -> axum::http::response::Builder {
    if let Some(headers) = builder.headers_mut() {
        headers.typed_insert(tag.clone());
    }
    builder
}

/// The strong entity tag of `version` (with `suffix` for an encoding).
fn etag(version: u64, suffix: &str) -> Result<ETag, ApiError> {
    format!("\"{version}{suffix}\"")
        .parse()
        .map_err(|_| ApiError::Unavailable(format!("invalid entity tag for version {version}")))
}

/// Whether `Accept-Encoding` accepts gzip (`gzip`, `x-gzip` or `*` with a
/// non-zero q-value; an explicit `gzip` entry wins over `*`).
fn accepts_gzip(headers: &HeaderMap) -> bool {
    let mut explicit = None;
    let mut any = None;
    for value in headers.get_all(header::ACCEPT_ENCODING) {
        let Ok(value) = value.to_str() else { continue };
        for item in value.split(',') {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q=").or(p.trim().strip_prefix("Q=")))
                .filter_map(|q| q.trim().parse::<f32>().ok())
                .next()
                .unwrap_or(1.0);
            match coding.as_str() {
                "gzip" | "x-gzip" => explicit = Some(q > 0.0),
                "*" => any = Some(q > 0.0),
                _ => {}
            }
        }
    }
    explicit.or(any).unwrap_or(false)
}

/// `bytes` gzipped; `None` (serve it uncompressed) if compression failed.
fn gzip(bytes: &[u8]) -> Option<Bytes> {
    let mut encoder = GzEncoder::new(Vec::with_capacity(bytes.len() / 4), Compression::default());
    encoder.write_all(bytes).ok()?;
    encoder.finish().ok().map(Bytes::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_str(value).unwrap(),
        );
        headers
    }

    #[test]
    fn accept_encoding_is_read_with_its_q_values() {
        assert!(accepts_gzip(&with("gzip")));
        assert!(accepts_gzip(&with("deflate, gzip;q=0.5")));
        assert!(accepts_gzip(&with("*")));
        assert!(accepts_gzip(&with("GZIP")));
        assert!(!accepts_gzip(&with("gzip;q=0")));
        assert!(!accepts_gzip(&with("*, gzip;q=0")));
        assert!(!accepts_gzip(&with("br, deflate")));
        assert!(!accepts_gzip(&with("identity")));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    #[test]
    fn gzip_round_trips() {
        use std::io::Read;
        let body = br#"{"peers":[],"count":0}"#.repeat(100);
        let packed = gzip(&body).unwrap();
        assert!(packed.len() < body.len());
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&packed[..])
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, body);
    }
}
