//! The engine host process (`pcl engine`): reads its configuration from
//! stdin, listens on QUIC (over UDP, and over its stdin and stdout for a
//! daemon that cannot reach it by UDP), prints the handshake line, and
//! serves the daemon until stdin closes. Stdin is the tether: when the SSH
//! channel or the daemon goes away, it reads end-of-file and takes every
//! shell and child with it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::time::Duration;

use quinn::{Connection, ConnectionError, Endpoint, RecvStream, SendStream};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{Mutex, Notify, OnceCell, watch};
use tokio::time::Instant;

use super::batch::{BatchScript, interrupt, run_batch};
use super::blocking::off_the_runtime;
use super::guard::Guard;
use super::procs::{become_subreaper, kill_descendants, kill_sessions, reap_adopted};
use super::relay::{Dialer, Upstreams};
use super::scratch::scratch_dir;
use super::workdir::prepare_workdir;
use super::workdir_probe::Marker;
use super::{EngineError, Shell, ShellSpec};
use crate::join_all;
use crate::protocol::engine::{
    EngineHostConfig, EngineReply, EngineRequest, HANDSHAKE_PREFIX, SESSION_DOWN,
};
use crate::transport::{
    Channel, Identity, PeerPins, peer_fingerprint, read_frame, server_channel_endpoint,
    server_endpoint, take_end_if_there, write_frame,
};

/// One engine: its shell, and the shell's pid readable without waiting
/// for the lock a running command holds.
pub(super) struct Engine {
    pub(super) shell: Mutex<Shell>,
    pub(super) pid: AtomicI32,
    /// Bumped by a cancelling interrupt; a batch stops when it changes.
    pub(super) cancel: AtomicU64,
    /// Told of every interrupt, for the running command (see `ShellSpec`).
    pub(super) interrupted: Arc<Notify>,
    /// The file `map`'s batches are sourced from, once the first is run.
    pub(super) batch_script: std::sync::Mutex<Option<BatchScript>>,
}

pub(super) struct Host {
    pub(super) config: EngineHostConfig,
    engines: OnceCell<Vec<Result<Arc<Engine>, String>>>,
    /// Daemon connections open now.
    connections: watch::Sender<usize>,
    pub(super) guard: Option<Arc<Guard>>,
    /// The workdir probe's marker while a probe runs.
    pub(super) marker: std::sync::Mutex<Option<Marker>>,
    /// Whose certificates the endpoint admits: the daemon's, and the
    /// upstream peers of relayed pushes under way.
    pub(super) pins: Arc<PeerPins>,
    pub(super) upstreams: Upstreams,
    pub(super) dialer: Dialer,
    /// Told when the daemon ends the session (`pcl down`).
    session_down: Notify,
}

/// Allocator arenas an engine host may use: glibc's default (8 per core)
/// gives every new thread one, and a relay's memory then grew with its
/// thread count rather than with the bytes it holds.
const MALLOC_ARENAS: libc::c_int = 2;

/// Free memory the allocator keeps instead of handing it back: every
/// command's buffers (a few hundred KiB for a host's engines) were handed
/// back after each px and faulted in again for the next.
const MALLOC_TRIM_THRESHOLD: libc::c_int = 2 << 20;

pub(crate) async fn run(bind: Option<SocketAddr>) -> Result<(), EngineError> {
    // SAFETY: mallopt only sets tunables of the allocator.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, MALLOC_ARENAS);
        libc::mallopt(libc::M_TRIM_THRESHOLD, MALLOC_TRIM_THRESHOLD);
    }
    let mut stdin = BufReader::new(super::stdio::stdin());
    let mut line = String::new();
    stdin.read_line(&mut line).await?;
    let config: EngineHostConfig =
        serde_json::from_str(&line).map_err(|e| EngineError::Config(e.to_string()))?;

    let identity = Identity::generate()?;
    let bind = bind.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
    let pins = PeerPins::new(&config.client_fingerprint);
    let udp = match config.listen_udp {
        true => Some(server_endpoint(&identity, pins.clone(), bind)?),
        false => None,
    };
    // Port 0: reachable over the channel only.
    let port = match &udp {
        Some(endpoint) => endpoint.local_addr()?.port(),
        None => 0,
    };
    println!(
        "{HANDSHAKE_PREFIX} port={port} fp={}",
        identity.fingerprint()
    );
    // From here on stdin and stdout carry the channel's datagrams (none,
    // when the daemon dials over UDP); stdin's end is still the tether.
    let channel = Channel::spawn(stdin, super::stdio::stdout());
    let mut tether_cut = channel.ended.clone();
    let over_channel = server_channel_endpoint(&identity, pins.clone(), channel.socket.clone())?;

    // Commands that leave their shell (setsid, nohup, a double fork)
    // become our children, to be ended with us.
    if let Err(e) = become_subreaper() {
        eprintln!("pcl engine: cannot adopt orphaned commands ({e}); some may outlive the session");
    }
    raise_open_files_limit();
    let grace = Duration::from_secs(config.reconnect_grace_secs.into());
    let host = Arc::new(Host {
        config,
        engines: OnceCell::new(),
        marker: std::sync::Mutex::new(None),
        connections: watch::Sender::new(0),
        pins,
        upstreams: Upstreams::default(),
        session_down: Notify::new(),
        // A host reached over the channel only is never asked to relay.
        dialer: Dialer {
            endpoint: udp.clone(),
            identity: Arc::new(identity),
        },
        guard: match Guard::spawn() {
            Ok(guard) => {
                // Removed at exit, or by the guard if the exit is a SIGKILL.
                match scratch_dir() {
                    Ok(dir) => guard.temp(dir),
                    Err(e) => eprintln!("pcl engine: no scratch directory: {e}"),
                }
                Some(Arc::new(guard))
            }
            Err(e) => {
                eprintln!(
                    "pcl engine: no guard process ({e}); shells may outlive a killed engine host"
                );
                None
            }
        },
    });
    let mut connections = host.connections.subscribe();
    // Not connected to any daemon since then; after the grace, nobody
    // is coming back for these engines.
    let mut alone_since = Some(Instant::now());
    let starter = host.clone();
    tokio::spawn(async move {
        starter.engines().await;
    });
    tokio::task::spawn_blocking(super::leftovers::clean_stale);
    tokio::spawn(watch_adopted(host.guard.clone()));

    loop {
        tokio::select! {
            _ = tether_cut.wait_for(|&cut| cut) => break,
            _ = host.session_down.notified() => break,
            incoming = accept(udp.as_ref(), &over_channel) => {
                let Some(incoming) = incoming else { break };
                let host = host.clone();
                tokio::spawn(async move {
                    match incoming.await {
                        Ok(conn) => host.serve(conn).await,
                        Err(e) if given_up_by_peer(&e) => {}
                        Err(e) => eprintln!("pcl engine: refused a peer: {e}"),
                    }
                });
            }
            changed = connections.changed() => {
                if changed.is_err() { break; }
                alone_since = (*connections.borrow() == 0).then(Instant::now);
            }
            _ = tokio::time::sleep_until(alone_since.unwrap_or_else(Instant::now) + grace), if alone_since.is_some() => {
                eprintln!("pcl engine: no session connected for {} s; stopping", grace.as_secs());
                break;
            }
        }
    }
    for endpoint in udp.iter().chain([&over_channel]) {
        endpoint.close(0u32.into(), b"engine host exiting");
    }
    drop(channel);
    host.marker.lock().expect("marker lock").take();
    host.kill_all();
    if let Ok(dir) = scratch_dir() {
        let _ = std::fs::remove_dir_all(dir);
    }
    Ok(())
}

/// The peer gave the connection up itself before it was made: a daemon
/// that dialled over UDP and over the channel at once keeps the first to
/// connect and drops the other. Nothing was refused.
fn given_up_by_peer(error: &ConnectionError) -> bool {
    match error {
        ConnectionError::ApplicationClosed(_) => true,
        // Closed before the handshake ended, an application's close is
        // sent as this transport error.
        ConnectionError::ConnectionClosed(close) => {
            close.error_code == quinn::TransportErrorCode::APPLICATION_ERROR
        }
        _ => false,
    }
}

/// The next peer knocking over UDP or over the channel.
async fn accept(udp: Option<&Endpoint>, channel: &Endpoint) -> Option<quinn::Incoming> {
    match udp {
        Some(udp) => tokio::select! {
            incoming = udp.accept() => incoming,
            incoming = channel.accept() => incoming,
        },
        None => channel.accept().await,
    }
}

/// Reap adopted orphans as they end, and tell the guard the sessions of
/// those still running, which it must end if we are killed. Checked on
/// every SIGCHLD and every second (an adoption itself sends no signal).
async fn watch_adopted(guard: Option<Arc<Guard>>) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut sigchld = signal(SignalKind::child()).ok();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut told = std::collections::HashSet::new();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            Some(()) = async { sigchld.as_mut()?.recv().await } => {}
        }
        for session in reap_adopted() {
            if let Some(guard) = guard.as_ref().filter(|_| told.insert(session)) {
                guard.watch(session);
            }
        }
    }
}

impl Host {
    async fn engines(&self) -> &Vec<Result<Arc<Engine>, String>> {
        self.engines.get_or_init(|| self.start_engines()).await
    }

    async fn start_engines(&self) -> Vec<Result<Arc<Engine>, String>> {
        let c = &self.config;
        let workdir = match prepare_workdir(c.workdir.as_deref()) {
            Ok(dir) => dir,
            Err(e) => return (0..c.engines).map(|_| Err(e.to_string())).collect(),
        };
        let starts = (0..c.engines).map(|i| {
            let interrupted = Arc::new(Notify::new());
            let spec = ShellSpec {
                interrupted: interrupted.clone(),
                program: c.shell.clone(),
                workdir: workdir.clone(),
                env: vec![
                    ("PCL_ENGINE_ID".into(), (c.first_id + i).to_string()),
                    ("PCL_ENGINE_COUNT".into(), c.engine_count.to_string()),
                    ("PCL_HOST".into(), c.host.clone()),
                    ("PCL_SESSION".into(), c.session.clone()),
                ],
                setup: c.setup.clone(),
                guard: self.guard.clone(),
            };
            async move {
                let shell = Shell::start(spec).await.map_err(|e| e.to_string())?;
                Ok(Arc::new(Engine {
                    pid: AtomicI32::new(shell.pid()),
                    shell: Mutex::new(shell),
                    cancel: AtomicU64::new(0),
                    interrupted,
                    batch_script: std::sync::Mutex::new(None),
                }))
            }
        });
        join_all(starts).await
    }

    /// End every shell, everything they started, and every command that
    /// escaped them (ours as their subreaper); the guard stays to the end.
    fn kill_all(&self) {
        if let Some(engines) = self.engines.get() {
            let shells: Vec<i32> = engines
                .iter()
                .flatten()
                .map(|engine| engine.pid.load(Ordering::SeqCst))
                .collect();
            kill_sessions(&shells);
        }
        let spare: Vec<i32> = self.guard.iter().map(|g| g.pid()).collect();
        if kill_descendants(&spare) {
            if let Some(guard) = &self.guard {
                guard.ended();
            }
        }
    }

    async fn serve(self: Arc<Self>, conn: Connection) {
        let fingerprint = peer_fingerprint(&conn).unwrap_or_default();
        if !self.pins.is_daemon(&fingerprint) {
            // A peer the daemon named for a relayed push: it may feed that
            // push, and nothing else.
            return self.upstreams.serve(conn, fingerprint).await;
        }
        self.connections.send_modify(|n| *n += 1);
        while let Ok((send, recv)) = conn.accept_bi().await {
            let host = self.clone();
            tokio::spawn(async move {
                if let Err(e) = host.handle(send, recv).await {
                    eprintln!("pcl engine: request failed: {e}");
                }
            });
            // The request just accepted starts first (yielding puts this
            // loop behind it): an engine's batches must take its shell in
            // the order the daemon sent them.
            tokio::task::yield_now().await;
        }
        self.connections.send_modify(|n| *n -= 1);
        if let Some(ConnectionError::ApplicationClosed(close)) = conn.close_reason()
            && close.error_code == SESSION_DOWN.into()
        {
            self.session_down.notify_one();
        }
    }

    async fn handle(
        self: Arc<Self>,
        mut send: SendStream,
        mut recv: RecvStream,
    ) -> Result<(), EngineError> {
        let Some(request) = read_frame::<_, EngineRequest>(&mut recv).await? else {
            return Ok(());
        };
        if !matches!(request, EngineRequest::Data(_)) {
            // Only a transfer sends more after its request.
            take_end_if_there(&mut recv);
        }
        match request {
            EngineRequest::Start => {
                let report = self
                    .engines()
                    .await
                    .iter()
                    .map(|e| e.as_ref().map(|_| ()).map_err(Clone::clone))
                    .collect();
                write_frame(&mut send, &EngineReply::Started(report)).await?;
            }
            EngineRequest::Exec {
                ids,
                command,
                timeout_ms,
            } => {
                let timeout = timeout_ms.map(Duration::from_millis);
                self.exec(ids, command, timeout, &mut send).await?;
            }
            EngineRequest::Interrupt { id, cancel } => {
                if let Ok(engine) = self.engine(id).await {
                    interrupt(&engine, id, cancel);
                }
            }
            EngineRequest::Batch {
                id,
                template,
                items,
                timeout_ms,
            } => match self.engine(id).await {
                Ok(engine) => {
                    let timeout = timeout_ms.map(Duration::from_millis);
                    run_batch(&engine, id, &template, items, timeout, &mut send).await?;
                }
                Err(e) => write_frame(&mut send, &EngineReply::Error(e)).await?,
            },
            EngineRequest::Data(op) => super::data::serve(&self, op, &mut send, &mut recv).await?,
            EngineRequest::Workdir(step) => {
                let host = self.clone();
                let reply = off_the_runtime(move || super::workdir_probe::serve(&host, step)).await;
                write_frame(&mut send, &reply).await?;
            }
        }
        let _ = send.finish();
        Ok(())
    }

    pub(super) async fn engine(&self, id: u32) -> Result<Arc<Engine>, String> {
        let index = id
            .checked_sub(self.config.first_id)
            .filter(|&i| i < self.config.engines)
            .ok_or_else(|| format!("engine {id} is not on this host"))?;
        self.engines().await[index as usize].clone()
    }
}

/// Every shell holds three pipes to us: many engines on one host need more
/// descriptors than the usual soft limit of 1024, and the hard limit is
/// ours to take.
fn raise_open_files_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write `limit`.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

#[cfg(test)]
mod tests {
    use quinn::{ApplicationClose, ConnectionClose, ConnectionError, TransportErrorCode, VarInt};

    use super::given_up_by_peer;

    #[test]
    fn a_peer_dropping_its_own_attempt_is_not_a_refusal() {
        let dropped = ConnectionError::ApplicationClosed(ApplicationClose {
            error_code: VarInt::from_u32(0),
            reason: Default::default(),
        });
        let dropped_in_handshake = ConnectionError::ConnectionClosed(ConnectionClose {
            error_code: TransportErrorCode::APPLICATION_ERROR,
            frame_type: None,
            reason: Default::default(),
        });
        let refused = ConnectionError::ConnectionClosed(ConnectionClose {
            error_code: TransportErrorCode::crypto(42),
            frame_type: None,
            reason: Default::default(),
        });
        assert!(given_up_by_peer(&dropped));
        assert!(given_up_by_peer(&dropped_in_handshake));
        assert!(!given_up_by_peer(&refused));
        assert!(!given_up_by_peer(&ConnectionError::TimedOut));
    }
}
