//! When a host's connection drops: dial the same engine host again (its
//! shells keep their state meanwhile) until its reconnect grace runs out,
//! then give the host up and stop it. The decisions are `LinkState`'s;
//! this is the clock and the network around them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::{Connection, Endpoint};

use super::EnginePool;
use crate::protocol::session::Route;
use crate::transport::{ChannelSocket, TransportError, Via, client_channel_endpoint, connect};

/// Pause between attempts to reach a lost engine host again.
const REDIAL_EVERY: Duration = Duration::from_secs(1);

/// How to reach an engine host: over UDP through the daemon's shared
/// endpoint, or over its ssh channel through an endpoint of its own.
#[derive(Clone)]
pub(super) struct Reach {
    via: Via,
    endpoint: Endpoint,
}

impl Reach {
    pub(super) fn udp(endpoint: &Endpoint, addr: SocketAddr) -> Reach {
        Reach {
            via: Via::Udp(addr),
            endpoint: endpoint.clone(),
        }
    }

    pub(super) fn channel(socket: Arc<ChannelSocket>) -> Result<Reach, TransportError> {
        Ok(Reach {
            via: Via::Channel,
            endpoint: client_channel_endpoint(socket)?,
        })
    }

    /// Where the host listens on UDP, if that is how it is reached.
    pub(super) fn udp_addr(&self) -> Option<SocketAddr> {
        match self.via {
            Via::Udp(addr) => Some(addr),
            Via::Channel => None,
        }
    }

    pub(super) fn route(&self) -> Route {
        match self.via {
            Via::Udp(_) => Route::Quic,
            Via::Channel => Route::Ssh,
        }
    }
}

impl EnginePool {
    pub(super) async fn dial(
        &self,
        index: usize,
        reach: &Reach,
        fingerprint: &str,
    ) -> Result<Connection, TransportError> {
        let idle = Duration::from_secs(self.hosts[index].spec.link_timeout.into());
        connect(
            &reach.endpoint,
            &self.identity,
            reach.via,
            fingerprint,
            idle,
        )
        .await
    }

    pub(super) fn watch_link(
        self: &Arc<Self>,
        index: usize,
        generation: u64,
        connection: Connection,
        reach: Reach,
        fingerprint: String,
    ) {
        let pool = self.clone();
        tokio::spawn(async move {
            let mut connection = connection;
            loop {
                let reason = connection.closed().await;
                let host = &pool.hosts[index];
                let grace = Duration::from_secs(host.spec.reconnect_grace.into());
                if pool.is_stopping() || !host.link().lost(generation, &reason.to_string()) {
                    return;
                }
                eprintln!(
                    "host {}: connection lost ({reason}); reconnecting",
                    host.spec.host
                );
                let deadline = tokio::time::Instant::now() + grace;
                let mut back = None;
                while tokio::time::Instant::now() < deadline && back.is_none() {
                    tokio::time::sleep(REDIAL_EVERY).await;
                    if !host.link().still_reconnecting(generation) {
                        return;
                    }
                    let attempt = tokio::time::timeout(
                        REDIAL_EVERY * 2,
                        pool.dial(index, &reach, &fingerprint),
                    );
                    back = attempt.await.ok().and_then(Result::ok);
                }
                match back {
                    Some(fresh) if host.link().redialled(generation, fresh.clone()) => {
                        eprintln!("host {}: reconnected", host.spec.host);
                        connection = fresh;
                    }
                    Some(_) => return,
                    None => {
                        host.link().down(
                            generation,
                            format!(
                                "connection lost: {reason}; not back within {} s",
                                grace.as_secs()
                            ),
                        );
                        host.tether.lock().await.take();
                        return;
                    }
                }
            }
        });
    }
}
