use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use tokio::net::{UnixListener, UnixStream};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::Notify;

use super::{EnginePool, SessionError, SessionPaths};
use crate::config::Cluster;
use crate::ops::{self, After};
use crate::protocol::session::{Reply, Request};
use crate::transport::{read_frame, write_frame};

/// Where a verb writes its replies.
pub struct ReplySink {
    stream: UnixStream,
}

impl ReplySink {
    pub async fn send(&mut self, reply: &Reply) -> Result<(), SessionError> {
        Ok(write_frame(&mut self.stream, reply).await?)
    }
}

/// `pcl session serve`: the detached daemon. Reads the cluster (JSON) on
/// stdin from `pcl up`, binds the socket, launches the hosts, serves until
/// `pcl down` or SIGTERM, then stops every engine.
pub fn serve_main(session: &str) -> Result<(), SessionError> {
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input)?;
    let cluster: Cluster = serde_json::from_str(&input)
        .map_err(|e| SessionError::DaemonFailed(session.to_string(), e.to_string()))?;
    let paths = SessionPaths::new(session)?;
    paths.create_dir()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = bind(&paths).await?;
        let pool = EnginePool::new(session, cluster)?;
        pool.launch_all();
        let shutdown = Arc::new(Notify::new());
        let mut term = signal(SignalKind::terminate())?;
        let stop = shutdown.clone();
        tokio::spawn(async move {
            term.recv().await;
            stop.notify_one();
        });
        serve(listener, pool.clone(), shutdown).await;
        eprintln!("session {session}: stopping engines");
        pool.shutdown().await;
        let _ = std::fs::remove_file(&paths.socket);
        Ok(())
    })
}

async fn bind(paths: &SessionPaths) -> Result<UnixListener, SessionError> {
    if paths.socket.exists() {
        if UnixStream::connect(&paths.socket).await.is_ok() {
            return Err(SessionError::AlreadyRunning(paths.name.clone()));
        }
        // A socket nobody answers on is left from a killed daemon.
        std::fs::remove_file(&paths.socket)?;
    }
    let listener = UnixListener::bind(&paths.socket)?;
    std::fs::set_permissions(&paths.socket, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Serve CLI requests until `shutdown` is notified. Tests can drive this
/// in-process with a listener and pool of their own.
pub async fn serve(listener: UnixListener, pool: Arc<EnginePool>, shutdown: Arc<Notify>) {
    // SAFETY: geteuid cannot fail.
    let me = unsafe { libc::geteuid() };
    loop {
        tokio::select! {
            _ = shutdown.notified() => break,
            accepted = listener.accept() => {
                let Ok((mut stream, _)) = accepted else { continue };
                // The directory is private already; the uid check makes
                // the socket safe even if it were not.
                let peer = stream.peer_cred().map(|c| c.uid()).ok();
                if peer != Some(me) {
                    eprintln!("refused a connection from uid {peer:?}");
                    let session = pool.session().to_string();
                    tokio::spawn(async move {
                        let refusal = Reply::Error(SessionError::OtherUser(session).to_string());
                        let _ = write_frame(&mut stream, &refusal).await;
                    });
                    continue;
                }
                let pool = pool.clone();
                let shutdown = shutdown.clone();
                tokio::spawn(async move {
                    if handle(stream, &pool).await == After::StopSession {
                        shutdown.notify_one();
                    }
                });
            }
        }
    }
}

async fn handle(mut stream: UnixStream, pool: &Arc<EnginePool>) -> After {
    let request = match read_frame::<_, Request>(&mut stream).await {
        Ok(Some(request)) => request,
        Ok(None) => return After::Continue,
        Err(e) => {
            let _ = write_frame(&mut stream, &Reply::Error(format!("bad request: {e}"))).await;
            return After::Continue;
        }
    };
    let mut sink = ReplySink { stream };
    match ops::dispatch(pool, request, &mut sink).await {
        Ok(after) => after,
        Err(e) => {
            let _ = sink.send(&Reply::Error(e.to_string())).await;
            After::Continue
        }
    }
}
