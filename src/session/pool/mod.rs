//! The daemon's view of its engines: one QUIC connection per engine host,
//! the host's link (up, lost and being re-dialled, down), and each
//! engine's own state. By concern: `launch` starts hosts and owns their
//! local processes (the tethers), `link` is the link's state machine and
//! `reconnect` the task that drives it when a connection drops, `roster`
//! says who is where and in what state, `call` sends engines requests,
//! `workdirs` finds out which engines share a workdir.

mod call;
mod launch;
mod link;
mod reconnect;
mod roster;
mod udp_race;
mod workdirs;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use quinn::Connection;
use tokio::sync::{oneshot, watch};

pub(crate) use call::{EngineCall, PoolError};
use link::LinkState;

use super::SessionPaths;
use crate::config::{Cluster, HostSpec};
use crate::protocol::engine::SESSION_DOWN;
use crate::protocol::relay::RelayPeer;
use crate::protocol::session::{LaunchProgress, Route};
use crate::transport::{ChannelClose, Identity, TransportError, client_endpoint};

/// An engine's state with its detail: the job it runs, or why it is dead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EngineCondition {
    Starting,
    Idle,
    Busy(String),
    Dead(String),
}

struct EngineSlot {
    id: u32,
    host_index: usize,
    /// The engine's own state; what its host's link says comes first.
    state: Mutex<EngineCondition>,
}

/// The local end of a running engine host: dropping `channel` closes its
/// stdin, which asks it to exit; dropping `kill` forces it; `exited`
/// turns true once it is gone.
struct Tether {
    channel: ChannelClose,
    kill: oneshot::Sender<()>,
    exited: watch::Receiver<bool>,
}

struct HostSlot {
    spec: HostSpec,
    first_id: u32,
    link: Mutex<LinkState<Connection>>,
    tether: tokio::sync::Mutex<Option<Tether>>,
    /// Why the host's last launch failed, for `pcl up`'s report.
    failure: Mutex<Option<String>>,
    /// How the host was last reached, and why when `auto` did not pick
    /// UDP.
    route: Mutex<Option<(Route, Option<String>)>>,
    /// Where the engine host listens and its certificate, as the last
    /// launch found them: what its peers need to relay to it.
    peer: Mutex<Option<RelayPeer>>,
}

impl HostSlot {
    fn link(&self) -> std::sync::MutexGuard<'_, LinkState<Connection>> {
        self.link.lock().expect("link lock")
    }
}

pub(crate) struct EnginePool {
    session: String,
    /// The session's private directory, for what the daemon spools.
    dir: PathBuf,
    identity: Identity,
    endpoint: quinn::Endpoint,
    engines: Vec<EngineSlot>,
    hosts: Vec<HostSlot>,
    progress: watch::Sender<LaunchProgress>,
    stopping: AtomicBool,
    workdirs: workdirs::Workdirs,
}

impl EnginePool {
    /// Engine ids are handed out in cluster-file order, so they are known
    /// (and stable) before any host answers.
    pub(crate) fn new(paths: &SessionPaths, cluster: Cluster) -> Result<Arc<Self>, TransportError> {
        let mut engines = Vec::new();
        let mut hosts = Vec::new();
        for (host_index, spec) in cluster.hosts.into_iter().enumerate() {
            let first_id = engines.len() as u32;
            for i in 0..spec.engines {
                engines.push(EngineSlot {
                    id: first_id + i,
                    host_index,
                    state: Mutex::new(EngineCondition::Starting),
                });
            }
            hosts.push(HostSlot {
                spec,
                first_id,
                link: Mutex::new(LinkState::new()),
                tether: tokio::sync::Mutex::new(None),
                failure: Mutex::new(None),
                route: Mutex::new(None),
                peer: Mutex::new(None),
            });
        }
        let total = hosts.len();
        Ok(Arc::new(Self {
            session: paths.name.clone(),
            dir: paths.dir.clone(),
            identity: Identity::generate()?,
            endpoint: client_endpoint()?,
            engines,
            hosts,
            progress: watch::Sender::new(LaunchProgress {
                settled: 0,
                total,
                ready: false,
            }),
            stopping: AtomicBool::new(false),
            workdirs: Default::default(),
        }))
    }

    pub(crate) fn session(&self) -> &str {
        &self.session
    }

    /// The session's private directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stop every engine host: close the connections and the tethers, and
    /// make sure the local processes (engines or ssh) are gone.
    pub(crate) async fn shutdown(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        for host in &self.hosts {
            if let Some(connection) = host.link().stop() {
                connection.close(SESSION_DOWN.into(), b"session down");
            }
        }
        // Close every tether first so all hosts wind down at once.
        let mut tethers = Vec::new();
        for host in &self.hosts {
            if let Some(tether) = host.tether.lock().await.take() {
                drop(tether.channel);
                tethers.push((tether.kill, tether.exited));
            }
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        for (kill, mut exited) in tethers {
            let gone = exited.wait_for(|&gone| gone);
            if tokio::time::timeout_at(deadline, gone).await.is_err() {
                let _ = kill.send(());
                let _ = exited.wait_for(|&gone| gone).await;
            }
        }
        self.endpoint.close(0u32.into(), b"session down");
    }
}
