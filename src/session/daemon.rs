use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{UnixListener, UnixStream};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::Notify;

use super::jobs::{Job, Jobs};
use super::{EnginePool, SessionError, SessionPaths};
use crate::config::Cluster;
use crate::launcher::slurm::{HeldAllocation, SlurmError};
use crate::ops::{self, After};
use crate::protocol::session::{Reply, Request};
use crate::transport::{encode_frame_into, read_frame, write_frame};

/// Where a verb writes its replies: the CLI's socket, or the record of an
/// `--async` job. A verb never needs to know which.
pub(crate) struct ReplySink {
    out: Out,
    input: Option<OwnedReadHalf>,
    job: Option<Arc<Job>>,
    jobs: Arc<Jobs>,
    /// Frames queued for the socket, written with the next `send` or `flush`.
    queued: Vec<u8>,
}

/// Queued frames past this go out at once.
const QUEUED_MAX: usize = 256 << 10;

enum Out {
    Socket(OwnedWriteHalf),
    Record,
}

impl ReplySink {
    fn new(out: Out, input: OwnedReadHalf, job: Option<Arc<Job>>, jobs: Arc<Jobs>) -> ReplySink {
        ReplySink {
            out,
            input: Some(input),
            job,
            jobs,
            queued: Vec::new(),
        }
    }

    /// Send `reply` now, after whatever was queued.
    pub(crate) async fn send(&mut self, reply: &Reply) -> Result<(), SessionError> {
        self.queue(reply).await?;
        self.flush().await
    }

    /// Queue `reply` to go out with the next `send` or `flush`: a burst of
    /// small replies (map's tasks) then costs one write, not one each.
    pub(crate) async fn queue(&mut self, reply: &Reply) -> Result<(), SessionError> {
        match &mut self.out {
            Out::Socket(_) => {
                encode_frame_into(reply, &mut self.queued)?;
                if self.queued.len() > QUEUED_MAX {
                    self.flush().await?;
                }
                Ok(())
            }
            Out::Record => {
                let job = self.job.as_ref().expect("a recording sink has a job");
                Ok(self.jobs.record(job, reply)?)
            }
        }
    }

    /// Write out what was queued.
    pub(crate) async fn flush(&mut self) -> Result<(), SessionError> {
        if let Out::Socket(stream) = &mut self.out {
            if !self.queued.is_empty() {
                stream.write_all(&self.queued).await?;
                self.queued.clear();
            }
        }
        Ok(())
    }

    /// Frames recorded earlier, passed on as they are (`pcl result`).
    pub(crate) async fn send_raw(&mut self, frames: &[u8]) -> Result<(), SessionError> {
        if let Out::Socket(stream) = &mut self.out {
            stream.write_all(frames).await?;
        }
        Ok(())
    }

    /// The CLI's side of the socket, for verbs that stream input after
    /// their request (map, push, scatter from stdin); an async job gets it
    /// too, since the CLI sends all of stdin before it leaves.
    pub(crate) fn take_input(&mut self) -> Option<OwnedReadHalf> {
        self.input.take()
    }

    /// The job this call runs as, if any.
    pub(crate) fn job(&self) -> Option<&Arc<Job>> {
        self.job.as_ref()
    }

    /// The engines `targets` names, recorded as this call's in the same
    /// step: `pcl jobs` lists them and an abort interrupts them, whatever
    /// the verb.
    pub(crate) fn targets(
        &self,
        pool: &EnginePool,
        targets: &str,
    ) -> Result<Vec<u32>, SessionError> {
        let ids = pool.resolve(targets)?;
        if let Some(job) = &self.job {
            job.set_engines(&ids);
        }
        Ok(ids)
    }

    pub(crate) fn jobs(&self) -> &Arc<Jobs> {
        &self.jobs
    }
}

/// `pcl session serve`: the detached daemon. Reads the cluster (JSON) on
/// stdin from `pcl up`, binds the socket, launches the hosts, serves until
/// `pcl down` or SIGTERM, then stops every engine.
pub(crate) fn serve_main(session: &str) -> Result<(), SessionError> {
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input)?;
    let cluster: Cluster = serde_json::from_str(&input)
        .map_err(|e| SessionError::DaemonFailed(session.to_string(), e.to_string()))?;
    let paths = SessionPaths::new(session)?;
    paths.create_dir()?;
    // One thread: the daemon waits on sockets, and with two workers each
    // request woke the idle one to steal from the other (17 context
    // switches per 4-engine `px true`, against 7 here). File work still
    // goes to the blocking pool (`spawn_blocking`).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut term = signal(SignalKind::terminate())?;
        // Nodes pcl asks Slurm for must be known before the engines are
        // numbered; `pcl up` shows the wait. SIGTERM (its Ctrl-C)
        // withdraws the request.
        let held = match cluster.slurm_request() {
            Some(request) => {
                let withdraw = async {
                    term.recv().await;
                };
                Some(HeldAllocation::request(request, session, withdraw).await?)
            }
            None => None,
        };
        let cluster = match &held {
            Some(held) => cluster.place_allocation(&held.allocation),
            None => Ok(cluster),
        };
        let served = match cluster {
            Ok(cluster) => serve_cluster(&paths, cluster, term).await,
            Err(e) => Err(SlurmError::from(e).into()),
        };
        // Only once the allocation is back does `pcl down` return.
        if let Some(held) = held {
            held.release().await;
        }
        if served.is_ok() {
            let _ = std::fs::remove_file(&paths.socket);
        }
        served
    })
}

/// Bind the socket, launch the hosts, serve until `pcl down` or SIGTERM,
/// then stop every engine.
async fn serve_cluster(
    paths: &SessionPaths,
    cluster: Cluster,
    mut term: tokio::signal::unix::Signal,
) -> Result<(), SessionError> {
    let listener = bind(paths).await?;
    let pool = EnginePool::new(paths, cluster)?;
    pool.launch_all();
    let shutdown = Arc::new(Notify::new());
    let stop = shutdown.clone();
    tokio::spawn(async move {
        term.recv().await;
        stop.notify_one();
    });
    serve(listener, pool.clone(), shutdown).await;
    eprintln!("session {}: stopping engines", paths.name);
    pool.shutdown().await;
    Ok(())
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
pub(crate) async fn serve(listener: UnixListener, pool: Arc<EnginePool>, shutdown: Arc<Notify>) {
    let jobs = Arc::new(Jobs::new(pool.dir().join("jobs")));
    serve_requests(listener, pool, jobs.clone(), shutdown).await;
    jobs.remove_files();
}

async fn serve_requests(
    listener: UnixListener,
    pool: Arc<EnginePool>,
    jobs: Arc<Jobs>,
    shutdown: Arc<Notify>,
) {
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
                let jobs = jobs.clone();
                let shutdown = shutdown.clone();
                tokio::spawn(async move {
                    if handle(stream, &pool, jobs).await == After::StopSession {
                        shutdown.notify_one();
                    }
                });
            }
        }
    }
}

async fn handle(stream: UnixStream, pool: &Arc<EnginePool>, jobs: Arc<Jobs>) -> After {
    let (mut read, mut write) = stream.into_split();
    let request = match read_frame::<_, Request>(&mut read).await {
        Ok(Some(request)) => request,
        Ok(None) => return After::Continue,
        Err(e) => {
            let _ = write_frame(&mut write, &Reply::Error(format!("bad request: {e}"))).await;
            return After::Continue;
        }
    };
    if let Request::Async { argv, request } = request {
        let reply = if request.is_job() {
            let job = jobs.start(argv, true);
            let id = job.id;
            // The CLI sends stdin (if the verb reads it) before it reads
            // the job id: the job spools it from this socket.
            let mut sink = ReplySink::new(Out::Record, read, Some(job.clone()), jobs.clone());
            let pool = pool.clone();
            tokio::spawn(async move {
                run_job(&pool, *request, &mut sink).await;
            });
            Reply::Job(id)
        } else {
            Reply::Error("--async is for verbs that run on engines".into())
        };
        let _ = write_frame(&mut write, &reply).await;
        let _ = write_frame(&mut write, &Reply::Done).await;
        return After::Continue;
    }
    let job = request.is_job().then(|| jobs.start(Vec::new(), false));
    let mut sink = ReplySink::new(Out::Socket(write), read, job, jobs);
    if let Some(job) = sink.job.clone() {
        // The CLI needs the id to abort this call on Ctrl-C.
        if sink.send(&Reply::Job(job.id)).await.is_err() {
            sink.jobs.finish(&job);
            return After::Continue;
        }
        run_job(pool, request, &mut sink).await;
        return After::Continue;
    }
    match ops::dispatch(pool, request, &mut sink).await {
        Ok(after) => after,
        Err(e) => {
            let _ = sink.send(&Reply::Error(e.to_string())).await;
            After::Continue
        }
    }
}

/// Run a job's verb to its end, then mark the job finished.
async fn run_job(pool: &Arc<EnginePool>, request: Request, sink: &mut ReplySink) {
    if let Err(e) = ops::dispatch(pool, request, sink).await {
        let _ = sink.send(&Reply::Error(e.to_string())).await;
    }
    let job = sink.job.clone().expect("a job");
    sink.jobs.finish(&job);
}
