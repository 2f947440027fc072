//! Starting engine hosts: the launch and handshake, the first connection,
//! and the local process (the engine host itself, or its ssh) whose exit
//! means the host is down; restarts of hosts that are down.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use quinn::Connection;
use tokio::process::Child;
use tokio::sync::{oneshot, watch};

use super::reconnect::Reach;
use super::udp_race::{self, Raced, UdpMiss};
use super::{EngineCondition, EnginePool, Tether};
use crate::config::{LauncherKind, Transport};
use crate::join_all;
use crate::launcher::{EngineHostProcess, ExitNote, launch};
use crate::protocol::engine::{EngineHostConfig, EngineReply, EngineRequest};
use crate::protocol::relay::RelayPeer;
use crate::session::setup;
use crate::transport::{ChannelClose, ChannelSocket, TransportError, read_frame, write_frame};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long `transport = "auto"` waits for an answer over UDP before it
/// dials the ssh channel too: a LAN answers within milliseconds, a closed
/// route never.
const UDP_PROBE: Duration = Duration::from_secs(3);
const UDP_HINT: &str = " (is UDP blocked? transport = \"ssh\" carries the session over ssh)";

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
            listen_udp: host.spec.transport != Transport::Ssh,
        };
        let process = launch(&host.spec, &config)
            .await
            .map_err(|e| e.to_string())?;
        let EngineHostProcess {
            child,
            channel,
            udp,
            fingerprint,
            exit,
        } = process;
        *host.tether.lock().await =
            Some(self.watch_process(index, generation, child, channel.close, exit));
        let (reach, connection, note) = self
            .first_connection(index, udp, channel.socket, &fingerprint)
            .await?;
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
        *host.route.lock().expect("lock") = Some((reach.route(), note));
        // Peers can dial only a host that listens on UDP; one reached over
        // its ssh channel gets its copy of a push straight from the daemon.
        *host.peer.lock().expect("lock") = reach.udp_addr().map(|addr| RelayPeer {
            addr,
            fingerprint: fingerprint.clone(),
        });
        if host.link().connected(generation, connection.clone()) {
            self.watch_link(index, generation, connection, reach, fingerprint);
        }
        Ok(())
    }

    /// The host's first connection: over UDP, or over the ssh channel its
    /// engine host was started on, as its `transport` says; with `auto`,
    /// UDP if it connects within the probe, or later but before the
    /// channel dialled beside it does (see `udp_race`). Also says why
    /// `auto` did not take UDP.
    async fn first_connection(
        &self,
        index: usize,
        udp: Result<SocketAddr, String>,
        channel: Arc<ChannelSocket>,
        fingerprint: &str,
    ) -> Result<(Reach, Connection, Option<String>), String> {
        let spec = &self.hosts[index].spec;
        let over_ssh = spec.launcher == LauncherKind::Ssh;
        let probe = over_ssh && spec.transport == Transport::Auto;
        let why_not_udp = match udp {
            // An engine host told not to listen that listens all the same
            // (an older `engine_path`) is still not dialled there.
            Ok(_) if spec.transport == Transport::Ssh => "transport = \"ssh\"".to_string(),
            Ok(addr) if probe => {
                let reach = Reach::udp(&self.endpoint, addr);
                let raced = udp_race::race(
                    self.dial_within(index, &reach, fingerprint, CONNECT_TIMEOUT),
                    || self.dial_channel(index, channel.clone(), fingerprint),
                    UDP_PROBE,
                )
                .await;
                let (dialled, miss) = match raced {
                    Raced::Udp(connection) => return Ok((reach, connection, None)),
                    Raced::Channel(dialled, miss) => (dialled, miss),
                };
                let why = match miss {
                    UdpMiss::Slow => format!(
                        "no QUIC answer over UDP from {addr} within {} s",
                        UDP_PROBE.as_secs()
                    ),
                    UdpMiss::Failed(Some(e)) => format!("QUIC over UDP to {addr} failed ({e})"),
                    UdpMiss::Failed(None) => format!(
                        "no QUIC answer over UDP from {addr} within {} s",
                        CONNECT_TIMEOUT.as_secs()
                    ),
                };
                let (reach, connection) = dialled?;
                let note = format!("{why}; the session goes over the ssh channel");
                return Ok((reach, connection, Some(note)));
            }
            Ok(addr) => {
                // Only an ssh host has a channel to fall back on.
                let hint = if over_ssh { UDP_HINT } else { "" };
                let reach = Reach::udp(&self.endpoint, addr);
                let connection = match self
                    .dial_within(index, &reach, fingerprint, CONNECT_TIMEOUT)
                    .await
                {
                    Ok(connection) => connection,
                    Err(Some(e)) => {
                        return Err(format!("QUIC connection to {addr} failed: {e}{hint}"));
                    }
                    Err(None) => {
                        return Err(format!(
                            "no QUIC answer from {addr} within {} s{hint}",
                            CONNECT_TIMEOUT.as_secs()
                        ));
                    }
                };
                return Ok((reach, connection, None));
            }
            Err(why) => why,
        };
        let (reach, connection) = self.dial_channel(index, channel, fingerprint).await?;
        let note = probe.then(|| format!("{why_not_udp}; the session goes over the ssh channel"));
        Ok((reach, connection, note))
    }

    /// Connect over the ssh channel the engine host was started on.
    async fn dial_channel(
        &self,
        index: usize,
        channel: Arc<ChannelSocket>,
        fingerprint: &str,
    ) -> Result<(Reach, Connection), String> {
        let reach = Reach::channel(channel).map_err(|e| e.to_string())?;
        match self
            .dial_within(index, &reach, fingerprint, CONNECT_TIMEOUT)
            .await
        {
            Ok(connection) => Ok((reach, connection)),
            Err(Some(e)) => Err(format!("QUIC connection over the ssh channel failed: {e}")),
            Err(None) => Err(format!(
                "no QUIC answer over the ssh channel within {} s",
                CONNECT_TIMEOUT.as_secs()
            )),
        }
    }

    /// `dial`, given up after `limit`: `Err(None)` when nothing answered.
    async fn dial_within(
        &self,
        index: usize,
        reach: &Reach,
        fingerprint: &str,
        limit: Duration,
    ) -> Result<Connection, Option<TransportError>> {
        match tokio::time::timeout(limit, self.dial(index, reach, fingerprint)).await {
            Ok(dialled) => dialled.map_err(Some),
            Err(_) => Err(None),
        }
    }

    /// Own the engine host's local process (the engine itself, or ssh):
    /// when it exits, the host is down at once, without waiting for QUIC
    /// to notice the silence.
    fn watch_process(
        self: &Arc<Self>,
        index: usize,
        generation: u64,
        mut child: Child,
        channel: ChannelClose,
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
                    if let Some(pid) = child.id() {
                        // ssh leads a process group of its own, with the
                        // ssh of its ProxyJump; elsewhere there is no
                        // such group and this does nothing.
                        // SAFETY: kill(2) on the group of our own child,
                        // not yet reaped, so its id is not reused.
                        unsafe {
                            libc::kill(-(pid as i32), libc::SIGKILL);
                        }
                    }
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
            channel,
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
