//! The daemon's view of its engines: one QUIC connection per engine host,
//! and each engine's state.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use quinn::{Connection, RecvStream, SendStream};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::config::{Cluster, HostSpec};
use crate::launcher::{EngineHostProcess, launch};
use crate::protocol::engine::{EngineHostConfig, EngineReply, EngineRequest};
use crate::transport::{
    Identity, TransportError, client_endpoint, connect, read_frame, write_frame,
};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

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
    state: Mutex<EngineState>,
}

struct HostSlot {
    spec: HostSpec,
    first_id: u32,
    connection: Mutex<Option<Connection>>,
    process: tokio::sync::Mutex<Option<EngineHostProcess>>,
    failure: Mutex<Option<String>>,
}

pub struct EnginePool {
    session: String,
    identity: Identity,
    endpoint: quinn::Endpoint,
    engines: Vec<EngineSlot>,
    hosts: Vec<HostSlot>,
    progress: watch::Sender<LaunchProgress>,
}

impl EnginePool {
    /// Engine ids are handed out in cluster-file order, so they are known
    /// (and stable) before any host answers.
    pub fn new(session: &str, cluster: Cluster) -> Result<Arc<Self>, TransportError> {
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
                connection: Mutex::new(None),
                process: tokio::sync::Mutex::new(None),
                failure: Mutex::new(None),
            });
        }
        let total = hosts.len();
        Ok(Arc::new(Self {
            session: session.to_string(),
            identity: Identity::generate()?,
            endpoint: client_endpoint()?,
            engines,
            hosts,
            progress: watch::Sender::new(LaunchProgress { settled: 0, total }),
        }))
    }

    pub fn session(&self) -> &str {
        &self.session
    }

    /// Start every host in parallel.
    pub fn launch_all(self: &Arc<Self>) {
        for index in 0..self.hosts.len() {
            let pool = self.clone();
            tokio::spawn(async move {
                let result = pool.launch_host(index).await;
                let host = &pool.hosts[index];
                if let Err(reason) = result {
                    eprintln!("host {}: {reason}", host.spec.host);
                    *host.failure.lock().expect("lock") = Some(reason.clone());
                    pool.mark_host_dead(index, &reason);
                }
                pool.progress.send_modify(|p| p.settled += 1);
            });
        }
    }

    async fn launch_host(self: &Arc<Self>, index: usize) -> Result<(), String> {
        let host = &self.hosts[index];
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
        };
        let process = launch(&host.spec, &config)
            .await
            .map_err(|e| e.to_string())?;
        let addr = process.addr;
        let fingerprint = process.fingerprint.clone();
        *host.process.lock().await = Some(process);
        let connection = tokio::time::timeout(
            CONNECT_TIMEOUT,
            connect(&self.endpoint, &self.identity, addr, &fingerprint),
        )
        .await
        .map_err(|_| {
            format!(
                "no QUIC answer from {addr} within {} s (is UDP blocked?)",
                CONNECT_TIMEOUT.as_secs()
            )
        })?
        .map_err(|e| format!("QUIC connection to {addr} failed: {e}"))?;
        *host.connection.lock().expect("lock") = Some(connection.clone());

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
        let pool = self.clone();
        tokio::spawn(async move {
            let reason = connection.closed().await;
            pool.mark_host_dead(index, &format!("connection lost: {reason}"));
        });
        Ok(())
    }

    fn mark_host_dead(&self, index: usize, reason: &str) {
        for slot in self.engines.iter().filter(|e| e.host_index == index) {
            let mut state = slot.state.lock().expect("lock");
            if !matches!(*state, EngineState::Dead(_)) {
                *state = EngineState::Dead(reason.to_string());
            }
        }
    }

    pub fn progress(&self) -> watch::Receiver<LaunchProgress> {
        self.progress.subscribe()
    }

    /// Hosts that failed to come up, with the reason.
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

    pub fn host_of(&self, id: u32) -> String {
        self.hosts[self.engines[id as usize].host_index]
            .spec
            .host
            .clone()
    }

    pub fn state(&self, id: u32) -> EngineState {
        self.engines[id as usize]
            .state
            .lock()
            .expect("lock")
            .clone()
    }

    /// Send one request to engine `id` on a stream of its own; the engine
    /// shows as busy with `job` until the returned call is dropped.
    pub async fn call(
        &self,
        id: u32,
        job: &str,
        request: &EngineRequest,
    ) -> Result<EngineCall<'_>, String> {
        let slot = &self.engines[id as usize];
        if let EngineState::Dead(reason) = &*slot.state.lock().expect("lock") {
            return Err(format!("engine {id} is dead: {reason}"));
        }
        let connection = self.hosts[slot.host_index]
            .connection
            .lock()
            .expect("lock")
            .clone()
            .ok_or_else(|| format!("engine {id} is not connected"))?;
        let (mut send, recv) = connection
            .open_bi()
            .await
            .map_err(|e| format!("engine {id} unreachable: {e}"))?;
        write_frame(&mut send, request)
            .await
            .map_err(|e| format!("engine {id} unreachable: {e}"))?;
        let _ = send.finish();
        {
            let mut state = slot.state.lock().expect("lock");
            if *state == EngineState::Idle {
                *state = EngineState::Busy(job.to_string());
            }
        }
        Ok(EngineCall {
            slot,
            _send: send,
            recv,
        })
    }

    /// Send a control request (an interrupt) to engine `id` and wait until
    /// the engine has acted on it; unlike `call`, the engine's state is
    /// left alone, since the command it interrupts still owns it.
    pub async fn control(&self, id: u32, request: &EngineRequest) -> Result<(), String> {
        let slot = &self.engines[id as usize];
        let connection = self.hosts[slot.host_index]
            .connection
            .lock()
            .expect("lock")
            .clone()
            .ok_or_else(|| format!("engine {id} is not connected"))?;
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
        for host in &self.hosts {
            if let Some(c) = host.connection.lock().expect("lock").take() {
                c.close(0u32.into(), b"session down");
            }
        }
        // Close every tether first so all hosts wind down at once.
        let mut children = Vec::new();
        for host in &self.hosts {
            if let Some(process) = host.process.lock().await.take() {
                let EngineHostProcess { child, stdin, .. } = process;
                drop(stdin);
                children.push(child);
            }
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        for mut child in children {
            if tokio::time::timeout_at(deadline, child.wait())
                .await
                .is_err()
            {
                let _ = child.kill().await;
            }
        }
        self.endpoint.close(0u32.into(), b"session down");
    }
}

/// One request in flight to one engine.
pub struct EngineCall<'a> {
    slot: &'a EngineSlot,
    _send: SendStream,
    recv: RecvStream,
}

impl EngineCall<'_> {
    /// The next reply; `Err` when the engine went away mid-request.
    pub async fn next(&mut self) -> Result<Option<EngineReply>, String> {
        read_frame(&mut self.recv).await.map_err(|e| {
            let state = self.slot.state.lock().expect("lock").clone();
            match state {
                EngineState::Dead(reason) => format!("engine {} died: {reason}", self.slot.id),
                _ => format!("engine {} lost: {e}", self.slot.id),
            }
        })
    }
}

impl Drop for EngineCall<'_> {
    fn drop(&mut self) {
        let mut state = self.slot.state.lock().expect("lock");
        if matches!(*state, EngineState::Busy(_)) {
            *state = EngineState::Idle;
        }
    }
}
