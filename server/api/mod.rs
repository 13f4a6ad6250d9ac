//! The two faces of the signaling service on the TCP port: the gRPC service
//! ([`grpc`], its streams in [`streams`], its protobuf conversions in
//! [`wire`]) and the seed-compatible REST shim ([`rest`], its shared listing bodies in [`body_cache`]), sharing input
//! rules ([`validate`]) and one error mapping ([`errors`]). [`app`] puts them, grpc.health.v1 and reflection into one
//! router for the listener.

pub mod body_cache;
pub mod errors;
pub mod grpc;
pub mod rest;
pub mod streams;
pub mod validate;
pub mod view_shelf;
pub mod wire;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use tokio::sync::broadcast;
use tonic::service::Routes;
use tonic_health::server::HealthReporter;

use crate::challenge::Challenges;
use crate::net::tasks::Tasks;
use crate::rendezvous::Rendezvous;
use crate::store::PeerStore;
use grpc::{GrpcLimits, SignalingService};
use p2pchat::proto;
use p2pchat::proto::signaling_server::SignalingServer;

/// The routes plus the health reporter, which flips to NOT_SERVING on
/// shutdown.
pub struct App {
    /// gRPC and REST routes together.
    pub router: Router,
    /// The grpc.health.v1 reporter.
    pub health: HealthReporter,
}

/// Builds the router: the Signaling service, grpc.health.v1, reflection
/// (v1 and v1alpha) and the REST shim, over one store, one rendezvous and
/// one set of registration challenges. REST bodies are capped at
/// `max_body_bytes`; stream tasks join `tasks`.
pub async fn app(
    store: Arc<dyn PeerStore>,
    rendezvous: Rendezvous,
    challenges: Arc<Challenges>,
    limits: GrpcLimits,
    max_body_bytes: usize,
    shutdown: broadcast::Sender<()>,
    tasks: Tasks,
) -> std::io::Result<App> {
    let max_message_bytes = limits.max_message_bytes;
    let service = SignalingService::new(
        store.clone(),
        rendezvous,
        challenges,
        limits,
        shutdown,
        tasks,
    );
    let signaling = SignalingServer::new(service)
        .max_decoding_message_size(max_message_bytes)
        .max_encoding_message_size(max_message_bytes);

    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<SignalingServer<SignalingService>>()
        .await;

    let reflection_v1 = reflection_builder()
        .build_v1()
        .map_err(std::io::Error::other)?;
    let reflection_v1alpha = reflection_builder()
        .build_v1alpha()
        .map_err(std::io::Error::other)?;

    // Built from an empty router so tonic adds no fallback of its own: the
    // REST shim's fallback answers unknown paths for both protocols.
    let grpc = Routes::from(Router::new())
        .add_service(signaling)
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .into_axum_router();
    let router = rest::router(store)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .merge(grpc);
    Ok(App { router, health })
}

/// Flips grpc.health.v1 to NOT_SERVING, so load balancers and clients on
/// open connections stop sending new work.
pub async fn set_not_serving(health: &HealthReporter) {
    health
        .set_not_serving::<SignalingServer<SignalingService>>()
        .await;
    health
        .set_service_status("", tonic_health::ServingStatus::NotServing)
        .await;
}

/// A reflection builder that knows every service on this port, both
/// reflection versions included, so `grpcurl list` shows them all whichever
/// version it speaks (grpcurl 1.8 speaks v1alpha).
fn reflection_builder() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .include_reflection_service(false)
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET)
}
