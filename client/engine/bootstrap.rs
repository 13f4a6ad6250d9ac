//! Start-up: register with the server, learn our public address (STUN) and
//! the candidates peers will probe, before the loop runs.

use std::net::SocketAddr;

use super::EngineError;
use super::api::Event;
use crate::identity::Identity;
use crate::signaling::{RegisterReply, Registration, ServerTrust, Signaling};
use crate::stun;
use crate::transport::{self, Transport};

/// What start-up learned.
#[derive(Debug)]
pub struct Bootstrap {
    /// The registered client.
    pub signaling: Signaling,
    /// The server's answer.
    pub registration: RegisterReply,
    /// The server's UDP (STUN + relay) address, if it offers one.
    pub server_udp: Option<SocketAddr>,
    /// Where STUN requests go.
    pub stun_server: Option<SocketAddr>,
    /// Our public address, if STUN answered.
    pub reflexive: Option<SocketAddr>,
    /// The first event for the front end.
    pub registered: Event,
}

/// Registers as `identity`'s peer id, proving the key (with retries), then
/// asks STUN for our public address and registers it too.
pub async fn bootstrap(
    server: &str,
    trust: &ServerTrust,
    identity: Identity,
    username: &str,
    stun_target: Option<&str>,
    transport: &dyn Transport,
    local_addr: SocketAddr,
) -> Result<Bootstrap, EngineError> {
    let local = transport::local_endpoints(local_addr);
    let me = identity.peer_id();
    let params = Registration {
        username: username.to_owned(),
        udp_port: local_addr.port(),
        endpoints: local.clone(),
    };
    let (signaling, registration) =
        Signaling::register_with(server, trust, identity, params).await?;
    let server_udp = server_udp_addr(&signaling, registration.udp_port).await;
    let stun_server = match stun_target {
        Some(target) => resolve_v4(target).await,
        None => server_udp,
    };
    let reflexive = discover(&signaling, transport, stun_server).await;
    let observed = format!("{}:{}", registration.observed_ip, local_addr.port());
    let public_addr = reflexive.map_or_else(|| observed.clone(), |a| a.to_string());
    let mut candidates: Vec<String> = local.iter().map(|a| a.to_string()).collect();
    candidates.extend(reflexive.map(|a| a.to_string()));
    if !candidates.contains(&observed) {
        candidates.push(observed);
    }
    let registered = Event::Registered {
        peer_id: me,
        username: registration.username.clone(),
        udp_port: local_addr.port(),
        public_addr,
        stun: reflexive.is_some(),
        candidates,
        observed_ip: registration.observed_ip.clone(),
        server: server.to_owned(),
    };
    Ok(Bootstrap {
        signaling,
        registration,
        server_udp,
        stun_server,
        reflexive,
        registered,
    })
}

/// Our public address from STUN, registered with the server; `None` when
/// there is no STUN server or it does not answer.
async fn discover(
    signaling: &Signaling,
    transport: &dyn Transport,
    stun_server: Option<SocketAddr>,
) -> Option<SocketAddr> {
    let Some(server) = stun_server else {
        tracing::warn!(
            "no STUN server (the signaling server offers no UDP port and --stun is not set); \
             peers will probe the server-observed IP with our local port"
        );
        return None;
    };
    match stun::discover(transport, server).await {
        Ok(addr) => {
            tracing::info!(%server, public = %addr, "STUN: learned our public address");
            if let Err(err) = signaling.set_reflexive(Some(addr)).await {
                tracing::warn!(%err, "could not register the STUN address");
            }
            Some(addr)
        }
        Err(err) => {
            tracing::warn!(
                %err,
                "STUN failed; peers will probe the server-observed IP with our local port"
            );
            None
        }
    }
}

/// The server's UDP (STUN + relay) address: its URL's host with the port
/// it announced. IPv4 only, like the chat socket.
async fn server_udp_addr(signaling: &Signaling, port: u16) -> Option<SocketAddr> {
    if port == 0 {
        return None;
    }
    let host = signaling.server_host()?;
    resolve_v4(&format!("{host}:{port}")).await
}

/// Resolves `host:port` to its first IPv4 address.
async fn resolve_v4(target: &str) -> Option<SocketAddr> {
    match tokio::net::lookup_host(target).await {
        Ok(mut addrs) => addrs.find(SocketAddr::is_ipv4),
        Err(err) => {
            tracing::warn!(%target, %err, "cannot resolve");
            None
        }
    }
}
