//! The thin loop around [`Core`]: it owns the socket, the timer, the
//! channels and the background tasks, feeds the core what happens with the
//! current time, and carries out what the core asks for.
//!
//! Events reach the front end from their own select branch: the core only
//! queues them, so a front end that stops reading cannot stall keep-alives
//! (see [`super::MAX_QUEUED_EVENTS`]). Background tasks (rendezvous
//! requests, address updates) live in a [`JoinSet`] and the signaling task
//! behind an [`AbortOnDrop`]: none outlives the engine.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use super::api::{Command, Event, Request};
use super::core::{Core, Output, RendezvousDone, Task};
use crate::session::PRIME_TTL;
use crate::signaling::{SignalEvent, Signaling};
use crate::transport::Transport;
use crate::wire::MAX_RECV_DATAGRAM_BYTES;

/// How long a clean exit waits for Unregister.
pub const UNREGISTER_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a clean exit waits for the front end to take the last events
/// (our own disconnects).
pub const FINAL_EVENTS_TIMEOUT: Duration = Duration::from_secs(2);

/// Most background tasks at once; a rendezvous asked for beyond it is
/// treated as failed (the known endpoints are probed; the next connect
/// attempt asks again).
pub const MAX_BACKGROUND_TASKS: usize = 64;

/// Aborts a task when dropped (e.g. when the engine task is aborted).
#[derive(Debug)]
pub struct AbortOnDrop(pub JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The loop's state. See the module docs.
pub struct Io {
    /// The decisions.
    pub core: Core,
    /// The chat socket.
    pub transport: Arc<dyn Transport>,
    /// The signaling client (for tasks and the token).
    pub signaling: Signaling,
    /// Events to the front end.
    pub events: mpsc::Sender<Event>,
    /// Stops the signaling task.
    pub stop: watch::Sender<bool>,
    /// The signaling task.
    pub signal_task: AbortOnDrop,
    /// Rendezvous requests and address updates in flight.
    pub tasks: JoinSet<Vec<RendezvousDone>>,
}

impl Io {
    /// Runs until `Quit` or the front end's command channel closes.
    pub async fn run(
        mut self,
        mut requests: mpsc::Receiver<Request>,
        mut signals: mpsc::Receiver<SignalEvent>,
    ) {
        // One byte more than the limit, so an oversized datagram is seen as
        // such instead of silently truncated to a valid-looking size.
        let mut buf = vec![0u8; MAX_RECV_DATAGRAM_BYTES + 1];
        let transport = self.transport.clone();
        let events = self.events.clone();
        self.core.set_token(self.signaling.session_token());
        loop {
            self.execute().await;
            self.forward_ready();
            let deadline = self.core.next_deadline();
            tokio::select! {
                received = transport.recv_from(&mut buf) => match received {
                    Ok((n, from)) => self.core.on_datagram(&buf[..n], from, Instant::now()),
                    // E.g. ICMP errors surfacing on some platforms; the
                    // socket itself stays usable.
                    Err(err) => tracing::debug!(%err, "UDP receive error"),
                },
                request = requests.recv() => match request {
                    Some(Request { command: Command::Quit, .. }) | None => break,
                    Some(request) => self.core.on_request(request, Instant::now()),
                },
                Some(signal) = signals.recv() => {
                    if matches!(signal, SignalEvent::Registered(_)) {
                        self.core.set_token(self.signaling.session_token());
                    }
                    self.core.on_signal(signal, Instant::now());
                }
                Some(done) = self.tasks.join_next(), if !self.tasks.is_empty() => match done {
                    Ok(results) => {
                        for result in results {
                            self.core.on_rendezvous(result, Instant::now());
                        }
                    }
                    Err(err) => tracing::warn!(%err, "background task failed"),
                },
                permit = reserve(&events), if self.core.has_events() => match permit {
                    Some(permit) => {
                        if let Some(event) = self.core.pop_event() {
                            permit.send(event);
                        }
                    }
                    None => self.core.front_end_gone(),
                },
                _ = sleep_until(deadline) => self.core.on_timer(Instant::now()),
            }
        }
        self.shutdown().await;
    }

    /// Says goodbye to every peer, stops the tasks, unregisters, and hands
    /// the front end its last events.
    async fn shutdown(mut self) {
        self.core.shutdown(Instant::now());
        self.execute().await;
        self.tasks.abort_all();
        let _ = self.stop.send(true);
        match tokio::time::timeout(UNREGISTER_TIMEOUT, self.signaling.unregister()).await {
            Ok(Ok(())) => tracing::info!("unregistered"),
            Ok(Err(err)) => tracing::warn!(%err, "unregister failed"),
            Err(_) => tracing::warn!("unregister timed out"),
        }
        let core = &mut self.core;
        let events = &self.events;
        let rest = async {
            while let Some(event) = core.pop_event() {
                if events.send(event).await.is_err() {
                    return;
                }
            }
        };
        if tokio::time::timeout(FINAL_EVENTS_TIMEOUT, rest)
            .await
            .is_err()
        {
            tracing::warn!("front end not reading; last events dropped");
        }
    }

    /// Moves queued events into the channel while it has room.
    fn forward_ready(&mut self) {
        while self.core.has_events() {
            match self.events.try_reserve() {
                Ok(permit) => {
                    if let Some(event) = self.core.pop_event() {
                        permit.send(event);
                    }
                }
                Err(mpsc::error::TrySendError::Full(())) => return,
                Err(mpsc::error::TrySendError::Closed(())) => {
                    tracing::debug!("front end gone; events dropped");
                    self.core.front_end_gone();
                    return;
                }
            }
        }
    }

    /// Carries out the core's outputs in order (consecutive primes share
    /// one TTL change).
    async fn execute(&mut self) {
        let mut primes = Vec::new();
        for output in self.core.take_outputs() {
            match output {
                Output::Prime { to, bytes } => primes.push((to, bytes)),
                Output::Send { to, bytes } => {
                    self.send_primes(std::mem::take(&mut primes)).await;
                    if let Err(err) = self.transport.send_to(&bytes, to).await {
                        tracing::debug!(%to, %err, "UDP send failed");
                    }
                }
                Output::Task(task) => self.spawn(task),
            }
        }
        self.send_primes(primes).await;
    }

    /// Sends priming probes with a low TTL (see [`PRIME_TTL`]), then puts
    /// the socket's TTL back.
    async fn send_primes(&self, primes: Vec<(SocketAddr, Vec<u8>)>) {
        if primes.is_empty() {
            return;
        }
        let normal = self.transport.ttl().unwrap_or(64);
        if let Err(err) = self.transport.set_ttl(PRIME_TTL) {
            tracing::debug!(%err, "cannot lower the TTL; priming skipped");
            return;
        }
        for (to, bytes) in primes {
            if let Err(err) = self.transport.send_to(&bytes, to).await {
                tracing::debug!(%to, %err, "UDP send failed");
            }
        }
        if let Err(err) = self.transport.set_ttl(normal) {
            tracing::warn!(%err, "cannot restore the socket TTL");
        }
    }

    /// Starts a background task, tracked in [`Io::tasks`].
    fn spawn(&mut self, task: Task) {
        if self.tasks.len() >= MAX_BACKGROUND_TASKS {
            tracing::warn!(?task, "too many background tasks; skipped");
            // A skipped rendezvous counts as a failed one: the core probes
            // the endpoints it knows, as it does when the server fails.
            if let Task::Rendezvous {
                target,
                create,
                request,
            } = task
            {
                let done = RendezvousDone {
                    target,
                    result: Err("too many background tasks".into()),
                    create,
                    request,
                };
                self.core.on_rendezvous(done, Instant::now());
            }
            return;
        }
        let signaling = self.signaling.clone();
        match task {
            Task::Rendezvous {
                target,
                create,
                request,
            } => {
                self.tasks.spawn(async move {
                    vec![rendezvous(&signaling, target, create, request).await]
                });
            }
            Task::Readdress { reflexive, peers } => {
                self.tasks.spawn(async move {
                    if let Err(err) = signaling.set_reflexive(reflexive).await {
                        tracing::warn!(%err, "could not register our new public address");
                    }
                    let mut done = Vec::with_capacity(peers.len());
                    for peer in peers {
                        done.push(rendezvous(&signaling, peer, false, None).await);
                    }
                    done
                });
            }
        }
    }
}

/// One rendezvous request.
async fn rendezvous(
    signaling: &Signaling,
    target: crate::signaling::RemotePeer,
    create: bool,
    request: Option<crate::engine::RequestId>,
) -> RendezvousDone {
    let result = signaling
        .request_connect(target.peer_id)
        .await
        .map_err(|e| e.to_string());
    RendezvousDone {
        target,
        result,
        create,
        request,
    }
}

/// Waits for room in the event channel; `None` when it is closed.
async fn reserve(tx: &mpsc::Sender<Event>) -> Option<mpsc::Permit<'_, Event>> {
    tx.reserve().await.ok()
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
