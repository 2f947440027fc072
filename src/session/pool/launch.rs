//! Starting engine hosts: the launch and handshake, the first connection,
//! and the local process (the engine host itself, or its ssh) whose exit
//! means the host is down; restarts of hosts that are down.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::process::{Child, ChildStdin};
use tokio::sync::{oneshot, watch};

use super::{EngineCondition, EnginePool, Tether};
use crate::join_all;
use crate::launcher::{EngineHostProcess, ExitNote, launch};
use crate::protocol::engine::{EngineHostConfig, EngineReply, EngineRequest};
use crate::protocol::relay::RelayPeer;
use crate::session::setup;
use crate::transport::{read_frame, write_frame};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

impl EnginePool {
    /// Start every host in parallel, then probe which share a workdir.
    pub(crate) fn launch_all(self: &Arc<Self>) {
        let pool = self.clone();
        tokio::spawn(async move {
            let launches = (0..pool.hosts.len()).map(|index| {
                let pool = pool.clone();
                async move {
                    let _ = pool.launch(index).await;
                    pool.progress.send_modify(|p| p.settled += 1);
                }
            });
            join_all(launches).await;
            pool.probe_workdirs().await;
            pool.progress.send_modify(|p| p.ready = true);
        });
    }

    /// (Re)launch host `index` with fresh engines; failures are recorded.
    async fn launch(self: &Arc<Self>, index: usize) -> Result<(), String> {
        let host = &self.hosts[index];
        let generation = host.link().relaunch();
        let result = self.launch_host(index, generation).await;
        *host.failure.lock().expect("lock") = result.as_ref().err().cloned();
        if let Err(reason) = &result {
            eprintln!("host {}: {reason}", host.spec.host);
            // Dropping the tether stops a half-started engine host.
            host.tether.lock().await.take();
            host.link().down(generation, reason.clone());
        }
        result
    }

    async fn launch_host(self: &Arc<Self>, index: usize, generation: u64) -> Result<(), String> {
        let host = &self.hosts[index];
        for slot in self.engines.iter().filter(|e| e.host_index == index) {
            *slot.state.lock().expect("lock") = EngineCondition::Starting;
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
            setup: (host.spec.setup.as_deref()).map(|s| setup::script(s, &host.spec.shell)),
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
                Ok(()) => EngineCondition::Idle,
                Err(reason) => EngineCondition::Dead(format!(
                    "did not start: {}",
                    setup::explain(&reason, host.spec.setup.as_deref())
                )),
            };
        }
        *host.peer.lock().expect("lock") = Some(RelayPeer {
            addr,
            fingerprint: fingerprint.clone(),
        });
        if host.link().connected(generation, connection.clone()) {
            self.watch_link(index, generation, connection, addr, fingerprint);
        }
        Ok(())
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
            let why = if pool.is_stopping() {
                format!("engine host exited ({how})")
            } else {
                exit.explain(&how).await
            };
            pool.hosts[index].link().down(generation, why);
            let _ = exited_tx.send(true);
        });
        Tether {
            stdin,
            kill,
            exited,
        }
    }

    /// Relaunch the hosts of the given engines that are down, with fresh
    /// engines; hosts that are up are left alone. Returns (host, outcome)
    /// for each host relaunched.
    pub(crate) async fn restart(
        self: &Arc<Self>,
        ids: &[u32],
    ) -> Vec<(String, Result<(), String>)> {
        let mut indices: Vec<usize> = ids
            .iter()
            .map(|&id| self.engines[id as usize].host_index)
            .filter(|&i| self.hosts[i].link().is_down())
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
        if !outcomes.is_empty() {
            // The fresh engine hosts' workdirs may be shared like any.
            self.probe_workdirs().await;
        }
        outcomes
    }

    /// Whether the session is stopping: nothing is relaunched or re-dialled.
    pub(super) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }
}
