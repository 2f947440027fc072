//! The daemon's view of its engines: one QUIC connection per engine host,
//! the host's link (up, lost and being re-dialled, down), and each
//! engine's own state.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use quinn::{Connection, RecvStream, SendStream};
use serde::{Deserialize, Serialize};
use tokio::process::{Child, ChildStdin};
use tokio::sync::{oneshot, watch};

use super::{SessionError, SessionPaths, Targets};
use crate::config::{Cluster, HostSpec};
use crate::launcher::{EngineHostProcess, ExitNote, launch};
use crate::protocol::engine::{EngineHostConfig, EngineReply, EngineRequest};
use crate::transport::{
    Identity, TransportError, client_endpoint, connect, read_frame, write_frame,
};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Pause between attempts to reach a lost engine host again.
const REDIAL_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineState {
    Starting,
    Idle,
    Busy(String),
    Dead(String),
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaunchProgress {
    pub settled: usize,
    pub total: usize,
}

struct EngineSlot {
    id: u32,
    host_index: usize,
    /// The engine's own state; what its host's link says comes first.
    state: Mutex<EngineState>,
}

/// The local end of a running engine host: closing `stdin` asks it to
/// exit; dropping `kill` forces it; `exited` turns true once it is gone.
struct Tether {
    stdin: ChildStdin,
    kill: oneshot::Sender<()>,
    exited: watch::Receiver<bool>,
}

enum Link {
    Launching,
    Up(Connection),
    /// Lost; the same engine host (same pinned certificate) is being
    /// dialled again until the host's reconnect grace runs out.
    Reconnecting(String),
    Down(String),
}

struct HostSlot {
    spec: HostSpec,
    first_id: u32,
    link: Mutex<Link>,
    tether: tokio::sync::Mutex<Option<Tether>>,
    /// Why the host's last launch failed, for `pcl up`'s report.
    failure: Mutex<Option<String>>,
    /// Bumped by every launch, so watchers of an older engine host
    /// process or connection leave a newer one alone.
    generation: AtomicU64,
}

pub struct EnginePool {
    session: String,
    /// The session's private directory, for what the daemon spools.
    dir: PathBuf,
    identity: Identity,
    endpoint: quinn::Endpoint,
    engines: Vec<EngineSlot>,
    hosts: Vec<HostSlot>,
    progress: watch::Sender<LaunchProgress>,
    stopping: AtomicBool,
}

impl EnginePool {
    /// Engine ids are handed out in cluster-file order, so they are known
    /// (and stable) before any host answers.
    pub fn new(paths: &SessionPaths, cluster: Cluster) -> Result<Arc<Self>, TransportError> {
        let mut engines = Vec::new();
        let mut hosts = Vec::new();
        for (host_index, spec) in cluster.hosts.into_iter().enumerate() {
            let first_id = engines.len() as u32;
            for i in 0..spec.engines {
                engines.push(EngineSlot {
                    id: first_id + i,
                    host_index,
                    state: Mutex::new(EngineState::Starting),
                });
            }
            hosts.push(HostSlot {
                spec,
                first_id,
                link: Mutex::new(Link::Launching),
                tether: tokio::sync::Mutex::new(None),
                failure: Mutex::new(None),
                generation: AtomicU64::new(0),
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
            progress: watch::Sender::new(LaunchProgress { settled: 0, total }),
            stopping: AtomicBool::new(false),
        }))
    }

    pub fn session(&self) -> &str {
        &self.session
    }

    /// The session's private directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The Slurm job whose nodes the session's engines run on, if any.
    pub fn slurm_job(&self) -> Option<String> {
        self.hosts
            .iter()
            .find_map(|host| host.spec.slurm_job.clone())
    }

    /// Start every host in parallel.
    pub fn launch_all(self: &Arc<Self>) {
        for index in 0..self.hosts.len() {
            let pool = self.clone();
            tokio::spawn(async move {
                let _ = pool.launch(index).await;
                pool.progress.send_modify(|p| p.settled += 1);
            });
        }
    }

    /// (Re)launch host `index` with fresh engines; failures are recorded.
    async fn launch(self: &Arc<Self>, index: usize) -> Result<(), String> {
        let host = &self.hosts[index];
        let result = self.launch_host(index).await;
        *host.failure.lock().expect("lock") = result.as_ref().err().cloned();
        if let Err(reason) = &result {
            eprintln!("host {}: {reason}", host.spec.host);
            // Dropping the tether stops a half-started engine host.
            host.tether.lock().await.take();
            *host.link.lock().expect("lock") = Link::Down(reason.clone());
        }
        result
    }

    async fn launch_host(self: &Arc<Self>, index: usize) -> Result<(), String> {
        let host = &self.hosts[index];
        let generation = host.generation.fetch_add(1, Ordering::SeqCst) + 1;
        *host.link.lock().expect("lock") = Link::Launching;
        for slot in self.engines.iter().filter(|e| e.host_index == index) {
            *slot.state.lock().expect("lock") = EngineState::Starting;
        }
        let config = EngineHostConfig {
            session: self.session.clone(),
            client_fingerprint: self.identity.fingerprint(),
            host: host.spec.host.clone(),
            first_id: host.first_id,
            engines: host.spec.engines,
            engine_count: self.engines.len() as u32,
            workdir: host.spec.workdir.clone(),
            shell: host.spec.shell.clone(),
            setup: host.spec.setup.clone(),
            reconnect_grace_secs: host.spec.reconnect_grace,
        };
        let process = launch(&host.spec, &config)
            .await
            .map_err(|e| e.to_string())?;
        let EngineHostProcess {
            child,
            stdin,
            addr,
            fingerprint,
            exit,
        } = process;
        *host.tether.lock().await = Some(self.watch_process(index, generation, child, stdin, exit));
        let connection =
            tokio::time::timeout(CONNECT_TIMEOUT, self.dial(index, addr, &fingerprint))
                .await
                .map_err(|_| {
                    format!(
                        "no QUIC answer from {addr} within {} s (is UDP blocked?)",
                        CONNECT_TIMEOUT.as_secs()
                    )
                })?
                .map_err(|e| format!("QUIC connection to {addr} failed: {e}"))?;
        let (mut send, mut recv) = connection.open_bi().await.map_err(|e| e.to_string())?;
        write_frame(&mut send, &EngineRequest::Start)
            .await
            .map_err(|e| e.to_string())?;
        let _ = send.finish();
        let started = match read_frame::<_, EngineReply>(&mut recv).await {
            Ok(Some(EngineReply::Started(started))) => started,
            Ok(other) => return Err(format!("unexpected reply to start: {other:?}")),
            Err(e) => return Err(e.to_string()),
        };
        for (i, result) in started.into_iter().enumerate() {
            let slot = &self.engines[host.first_id as usize + i];
            *slot.state.lock().expect("lock") = match result {
                Ok(()) => EngineState::Idle,
                Err(reason) => EngineState::Dead(format!("did not start: {reason}")),
            };
        }
        *host.link.lock().expect("lock") = Link::Up(connection.clone());
        self.watch_link(index, generation, connection, addr, fingerprint);
        Ok(())
    }

    async fn dial(
        &self,
        index: usize,
        addr: SocketAddr,
        fingerprint: &str,
    ) -> Result<Connection, TransportError> {
        let idle = Duration::from_secs(self.hosts[index].spec.link_timeout.into());
        connect(&self.endpoint, &self.identity, addr, fingerprint, idle).await
    }

    /// Own the engine host's local process (the engine itself, or ssh):
    /// when it exits, the host is down at once, without waiting for QUIC
    /// to notice the silence.
    fn watch_process(
        self: &Arc<Self>,
        index: usize,
        generation: u64,
        mut child: Child,
        stdin: ChildStdin,
        exit: ExitNote,
    ) -> Tether {
        let (kill, kill_requested) = oneshot::channel::<()>();
        let (exited_tx, exited) = watch::channel(false);
        let pool = self.clone();
        tokio::spawn(async move {
            let how = tokio::select! {
                status = child.wait() => match status {
                    Ok(status) => status.to_string(),
                    Err(e) => e.to_string(),
                },
                _ = kill_requested => {
                    let _ = child.kill().await;
                    "stopped by pcl".to_string()
                }
            };
            // At `down` nobody reads the reason, and asking Slurm for it
            // would only slow the stop.
            let why = if pool.stopping.load(Ordering::SeqCst) {
                format!("engine host exited ({how})")
            } else {
                exit.explain(&how).await
            };
            pool.host_down(index, generation, why);
            let _ = exited_tx.send(true);
        });
        Tether {
            stdin,
            kill,
            exited,
        }
    }

    /// When the connection drops, dial the same engine host again (its
    /// shells keep their state meanwhile) until the grace runs out; then
    /// give the host up and stop it.
    fn watch_link(
        self: &Arc<Self>,
        index: usize,
        generation: u64,
        connection: Connection,
        addr: SocketAddr,
        fingerprint: String,
    ) {
        let pool = self.clone();
        tokio::spawn(async move {
            let mut connection = connection;
            loop {
                let reason = connection.closed().await;
                let host = &pool.hosts[index];
                let grace = Duration::from_secs(host.spec.reconnect_grace.into());
                {
                    let mut link = host.link.lock().expect("lock");
                    let current = host.generation.load(Ordering::SeqCst) == generation;
                    if pool.stopping.load(Ordering::SeqCst)
                        || !current
                        || !matches!(*link, Link::Up(_))
                    {
                        return;
                    }
                    eprintln!(
                        "host {}: connection lost ({reason}); reconnecting",
                        host.spec.host
                    );
                    *link = Link::Reconnecting(format!("connection lost: {reason}"));
                }
                let deadline = tokio::time::Instant::now() + grace;
                let mut back = None;
                while tokio::time::Instant::now() < deadline && back.is_none() {
                    tokio::time::sleep(REDIAL_EVERY).await;
                    if !matches!(*host.link.lock().expect("lock"), Link::Reconnecting(_)) {
                        return;
                    }
                    let attempt = tokio::time::timeout(
                        REDIAL_EVERY * 2,
                        pool.dial(index, addr, &fingerprint),
                    );
                    back = attempt.await.ok().and_then(Result::ok);
                }
                match back {
                    Some(fresh) => {
                        eprintln!("host {}: reconnected", host.spec.host);
                        *host.link.lock().expect("lock") = Link::Up(fresh.clone());
                        connection = fresh;
                    }
                    None => {
                        pool.host_down(
                            index,
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

    fn host_down(&self, index: usize, generation: u64, reason: String) {
        let host = &self.hosts[index];
        if host.generation.load(Ordering::SeqCst) != generation {
            return;
        }
        let mut link = host.link.lock().expect("lock");
        if !matches!(*link, Link::Down(_)) {
            *link = Link::Down(reason);
        }
    }

    pub fn progress(&self) -> watch::Receiver<LaunchProgress> {
        self.progress.subscribe()
    }

    /// Hosts whose last launch failed, with the reason.
    pub fn failures(&self) -> Vec<(String, String)> {
        self.hosts
            .iter()
            .filter_map(|h| {
                let failure = h.failure.lock().expect("lock").clone()?;
                Some((h.spec.host.clone(), failure))
            })
            .collect()
    }

    /// Every engine as (id, host), in id order.
    pub fn roster(&self) -> Vec<(u32, String)> {
        self.engines
            .iter()
            .map(|e| (e.id, self.hosts[e.host_index].spec.host.clone()))
            .collect()
    }

    /// The engine ids a `--targets` value names, in id order.
    pub fn resolve(&self, targets: &str) -> Result<Vec<u32>, SessionError> {
        targets
            .parse::<Targets>()?
            .resolve(&self.roster())
            .map_err(|why| SessionError::BadTargets(targets.to_string(), why))
    }

    pub fn host_of(&self, id: u32) -> String {
        self.hosts[self.engines[id as usize].host_index]
            .spec
            .host
            .clone()
    }

    /// Engines with the same host slot share one engine host process, and
    /// so one workdir.
    pub fn host_slot(&self, id: u32) -> usize {
        self.engines[id as usize].host_index
    }

    /// The engine's state as a user sees it: a host that is not connected
    /// makes all its engines dead (saying whether it is coming back).
    pub fn state(&self, id: u32) -> EngineState {
        let slot = &self.engines[id as usize];
        match &*self.hosts[slot.host_index].link.lock().expect("lock") {
            Link::Launching => EngineState::Starting,
            Link::Up(_) => slot.state.lock().expect("lock").clone(),
            Link::Reconnecting(reason) => EngineState::Dead(format!("{reason}; reconnecting")),
            Link::Down(reason) => EngineState::Dead(reason.clone()),
        }
    }

    /// Relaunch the hosts of the given engines that are down, with fresh
    /// engines; hosts that are up are left alone. Returns (host, outcome)
    /// for each host relaunched.
    pub async fn restart(self: &Arc<Self>, ids: &[u32]) -> Vec<(String, Result<(), String>)> {
        let mut indices: Vec<usize> = ids
            .iter()
            .map(|&id| self.engines[id as usize].host_index)
            .filter(|&i| matches!(*self.hosts[i].link.lock().expect("lock"), Link::Down(_)))
            .collect();
        indices.dedup();
        let mut outcomes = Vec::new();
        for index in indices {
            // Whatever is left of the old engine host goes first.
            self.hosts[index].tether.lock().await.take();
            outcomes.push((
                self.hosts[index].spec.host.clone(),
                self.launch(index).await,
            ));
        }
        outcomes
    }

    /// Send one request to engine `id` on a stream of its own; the engine
    /// shows as busy with `job` until the returned call is dropped.
    pub async fn call(
        &self,
        id: u32,
        job: &str,
        request: &EngineRequest,
    ) -> Result<EngineCall<'_>, String> {
        let mut call = self.open(id, job, request).await?;
        let _ = call.send.finish();
        Ok(call)
    }

    /// Like `call`, but the send side stays open for the bulk frames that
    /// follow the request (`EngineCall::send`).
    pub async fn open(
        &self,
        id: u32,
        job: &str,
        request: &EngineRequest,
    ) -> Result<EngineCall<'_>, String> {
        if let EngineState::Dead(reason) = self.state(id) {
            return Err(format!("engine {id} is dead: {reason}"));
        }
        let slot = &self.engines[id as usize];
        let connection = match &*self.hosts[slot.host_index].link.lock().expect("lock") {
            Link::Up(connection) => connection.clone(),
            _ => return Err(format!("engine {id} is not connected")),
        };
        let (mut send, recv) = connection
            .open_bi()
            .await
            .map_err(|e| format!("engine {id} unreachable: {e}"))?;
        write_frame(&mut send, request)
            .await
            .map_err(|e| format!("engine {id} unreachable: {e}"))?;
        {
            let mut state = slot.state.lock().expect("lock");
            if *state == EngineState::Idle {
                *state = EngineState::Busy(job.to_string());
            }
        }
        Ok(EngineCall {
            pool: self,
            id,
            send,
            recv,
        })
    }

    /// Send a control request (an interrupt) to engine `id` and wait until
    /// the engine has acted on it; unlike `call`, the engine's state is
    /// left alone, since the command it interrupts still owns it.
    pub async fn control(&self, id: u32, request: &EngineRequest) -> Result<(), String> {
        let slot = &self.engines[id as usize];
        let connection = match &*self.hosts[slot.host_index].link.lock().expect("lock") {
            Link::Up(connection) => connection.clone(),
            _ => return Err(format!("engine {id} is not connected")),
        };
        let (mut send, mut recv) = connection.open_bi().await.map_err(|e| e.to_string())?;
        write_frame(&mut send, request)
            .await
            .map_err(|e| e.to_string())?;
        let _ = send.finish();
        read_frame::<_, EngineReply>(&mut recv)
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    }

    /// Stop every engine host: close the connections and the tethers, and
    /// make sure the local processes (engines or ssh) are gone.
    pub async fn shutdown(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        for host in &self.hosts {
            let link = std::mem::replace(
                &mut *host.link.lock().expect("lock"),
                Link::Down("session stopped".into()),
            );
            if let Link::Up(connection) = link {
                connection.close(0u32.into(), b"session down");
            }
        }
        // Close every tether first so all hosts wind down at once.
        let mut tethers = Vec::new();
        for host in &self.hosts {
            if let Some(tether) = host.tether.lock().await.take() {
                drop(tether.stdin);
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

/// One request in flight to one engine.
pub struct EngineCall<'a> {
    pool: &'a EnginePool,
    id: u32,
    send: SendStream,
    recv: RecvStream,
}

impl EngineCall<'_> {
    /// The request's send side, for bulk frames after the request.
    pub fn send(&mut self) -> &mut SendStream {
        &mut self.send
    }

    /// The next reply; `Err` when the engine went away mid-request.
    pub async fn next(&mut self) -> Result<Option<EngineReply>, String> {
        read_frame(&mut self.recv)
            .await
            .map_err(|e| match self.pool.state(self.id) {
                EngineState::Dead(reason) => format!("engine {} died: {reason}", self.id),
                _ => format!("engine {} lost: {e}", self.id),
            })
    }
}

impl Drop for EngineCall<'_> {
    fn drop(&mut self) {
        let mut state = self.pool.engines[self.id as usize]
            .state
            .lock()
            .expect("lock");
        if matches!(*state, EngineState::Busy(_)) {
            *state = EngineState::Idle;
        }
    }
}
