//! Moving bytes between the daemon and engines: uploads fed by blocking
//! readers through small bounded queues (so memory stays flat whatever the
//! size), downloads, progress for the CLI, and the spool for stdin.

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::abort::Abort;
use crate::protocol::data::{Bulk, CHUNK, Checksum, EngineData, Source, chunk_header, read_full};
use crate::protocol::engine::{EngineReply, EngineRequest};
use crate::protocol::session::{EngineDone, Reply, Request};
use crate::protocol::status;
use crate::session::{EngineCall, EnginePool, PoolError, ReplySink, SessionError};
use crate::transport::{encode_frame, read_frame};

/// Frames queued per engine (a chunk is two: header and bytes). The
/// reader runs at most 16 MiB ahead of the slowest engine; the chunks are
/// shared, so memory grows only with how far engines drift apart, and a
/// moment's stall of one engine does not stall the others.
const QUEUE_DEPTH: usize = 32;

/// How often the CLI hears how far a transfer got.
const PROGRESS_EVERY: Duration = Duration::from_millis(200);

/// Why one engine's part failed.
#[derive(Debug, Clone)]
pub(super) enum Failure {
    /// The engine answered with an error.
    Engine(String),
    /// The engine could not be reached, or went away mid-transfer.
    Lost(String),
    /// The call's job was aborted before this engine's part was done.
    Aborted(String),
}

/// An engine the session could not reach, or lost mid-transfer.
impl From<PoolError> for Failure {
    fn from(e: PoolError) -> Failure {
        Failure::Lost(e.to_string())
    }
}

impl Failure {
    pub(super) fn status(&self) -> i32 {
        match self {
            // An error of the engine's own: an unset variable, a missing
            // file, a full disk.
            Failure::Engine(_) => status::FAILURE,
            Failure::Lost(_) => status::UNREACHABLE,
            // As a shell reports death by SIGINT.
            Failure::Aborted(_) => status::INTERRUPTED,
        }
    }

    pub(super) fn message(&self) -> &str {
        match self {
            Failure::Engine(m) | Failure::Lost(m) | Failure::Aborted(m) => m,
        }
    }
}

/// What an aborted upload or download left: nothing.
pub(super) const ABORTED: &str = "aborted; nothing partial was kept";

impl Abort {
    /// `work`, or `Failure::Aborted(why)` if the job is aborted first.
    pub(super) async fn or<T>(
        &mut self,
        why: &str,
        work: impl Future<Output = Result<T, Failure>>,
    ) -> Result<T, Failure> {
        tokio::select! {
            result = work => result,
            () = self.wait() => Err(Failure::Aborted(why.to_string())),
        }
    }
}

pub(super) type Outcome = Result<(), Failure>;

/// The CLI's per-engine verdict.
pub(super) async fn report(
    out: &mut ReplySink,
    pool: &EnginePool,
    id: u32,
    outcome: &Outcome,
) -> Result<(), SessionError> {
    out.send(&Reply::EngineDone(EngineDone {
        id,
        host: pool.host_of(id),
        status: outcome.as_ref().err().map_or(0, Failure::status),
        note: outcome.as_ref().err().map(|f| f.message().to_string()),
    }))
    .await
}

/// Map an engine's answer to a request that stores something.
pub(super) fn stored(id: u32, answer: Result<Option<EngineReply>, PoolError>) -> Outcome {
    match answer {
        Ok(Some(EngineReply::Stored)) => Ok(()),
        Ok(Some(EngineReply::Error(e))) => Err(Failure::Engine(e)),
        Ok(Some(other)) => Err(Failure::Lost(format!("unexpected reply {other:?}"))),
        Ok(None) => Err(Failure::Lost(format!(
            "engine {id} ended the request without an answer"
        ))),
        Err(e) => Err(e.into()),
    }
}

/// Send one request that needs no bulk bytes and wait for `Stored`.
pub(super) async fn store(pool: &EnginePool, id: u32, job: &str, op: EngineData) -> Outcome {
    let mut call = pool
        .call(id, job, &EngineRequest::Data(op))
        .await
        .map_err(Failure::from)?;
    stored(id, call.next().await)
}

/// One engine receiving bulk bytes. Encoded frames go into `queue` (a
/// chunk as its header, then its bytes); a task writes them to the
/// engine's stream and collects its answer.
pub(super) struct Upload {
    pub queue: mpsc::Sender<Bytes>,
    pub task: JoinHandle<Outcome>,
}

impl Upload {
    pub(super) fn start(
        pool: &Arc<EnginePool>,
        id: u32,
        job: String,
        first: EngineData,
        mut abort: Abort,
    ) -> Upload {
        let (queue, mut frames) = mpsc::channel::<Bytes>(QUEUE_DEPTH);
        let pool = pool.clone();
        let task = tokio::spawn(async move {
            let mut call = pool
                .open(id, &job, &EngineRequest::Data(first))
                .await
                .map_err(Failure::from)?;
            let pump = async {
                while let Some(frame) = frames.recv().await {
                    // `Bytes` go to quinn as they are: no copy per engine.
                    if call.send().write_chunk(frame).await.is_err() {
                        // The engine stopped listening; its answer says why.
                        break;
                    }
                }
            };
            let aborted = tokio::select! {
                () = pump => false,
                () = abort.wait() => true,
            };
            // Closing the queue tells the reader to skip this engine.
            drop(frames);
            if aborted {
                // A reset, not an end: the engine drops its temporary file.
                let _ = call.send().reset(0u32.into());
            } else {
                let _ = call.send().finish();
            }
            match stored(id, call.next().await) {
                // The engine may have had every byte already: then it is kept.
                Err(_) if aborted => Err(Failure::Aborted(ABORTED.into())),
                outcome => outcome,
            }
        });
        Upload { queue, task }
    }

    /// The outcome, once the engine has answered.
    pub(super) async fn outcome(self) -> Outcome {
        drop(self.queue);
        self.task
            .await
            .unwrap_or_else(|e| Err(Failure::Lost(format!("internal error: {e}"))))
    }
}

/// Read `len` bytes of `file` from `offset` and send them, then their
/// digest, to every queue still open. Runs on a blocking thread; counts
/// bytes read into `progress`. The same frame goes to every engine, so
/// the file is read once however many engines there are.
pub(super) fn feed(
    file: &mut (impl Read + Seek),
    offset: u64,
    len: u64,
    queues: &[mpsc::Sender<Bytes>],
    progress: &AtomicU64,
) -> io::Result<()> {
    file.seek(SeekFrom::Start(offset))?;
    let mut source = file.take(len);
    let mut digest = Checksum::new();
    let mut open: Vec<bool> = vec![true; queues.len()];
    loop {
        let mut buf = vec![0u8; CHUNK];
        let n = read_full(&mut source, &mut buf)?;
        if n == 0 {
            break;
        }
        buf.truncate(n);
        digest.update(&buf);
        send_chunk(queues, &mut open, Bytes::from(buf));
        progress.fetch_add(n as u64, Ordering::Relaxed);
        if !open.contains(&true) {
            return Ok(());
        }
    }
    send_end(queues, &mut open, digest);
    Ok(())
}

/// Items already in memory (scatter of arguments) to one engine.
pub(super) fn feed_bytes(bytes: &[u8], queue: &mpsc::Sender<Bytes>) {
    let mut open = [true];
    let queues = std::slice::from_ref(queue);
    let mut digest = Checksum::new();
    for piece in bytes.chunks(CHUNK) {
        digest.update(piece);
        send_chunk(queues, &mut open, Bytes::copy_from_slice(piece));
    }
    send_end(queues, &mut open, digest);
}

fn send_chunk(queues: &[mpsc::Sender<Bytes>], open: &mut [bool], data: Bytes) {
    let header = Bytes::from(chunk_header(data.len()));
    for (queue, open) in queues.iter().zip(open.iter_mut()) {
        *open = *open
            && queue.blocking_send(header.clone()).is_ok()
            && queue.blocking_send(data.clone()).is_ok();
    }
}

fn send_end(queues: &[mpsc::Sender<Bytes>], open: &mut [bool], digest: Checksum) {
    let end = encode_frame(&Bulk::End(digest.digest())).expect("an end frame encodes");
    let end = Bytes::from(end);
    for (queue, open) in queues.iter().zip(open.iter_mut()) {
        *open = *open && queue.blocking_send(end.clone()).is_ok();
    }
}

/// Await `work` while telling the CLI every so often how many bytes
/// `done` says have moved (and `all`, for every destination together). A
/// CLI that went away does not stop the work.
pub(super) async fn with_progress<T>(
    out: &mut ReplySink,
    done: impl Fn() -> u64,
    all: impl Fn() -> Option<u64>,
    total: Option<u64>,
    work: impl Future<Output = T>,
) -> T {
    tokio::pin!(work);
    let mut tick = tokio::time::interval(PROGRESS_EVERY);
    tick.tick().await;
    loop {
        tokio::select! {
            result = &mut work => return result,
            _ = tick.tick() => {
                let (done, all) = (done(), all());
                let _ = out.send(&Reply::Transfer { done, total, all }).await;
            }
        }
    }
}

/// The bytes a `GetVar` or `ReadFile` request asks for, chunk by chunk,
/// with their digest checked at the end.
pub(super) struct Download {
    digest: Checksum,
}

impl Download {
    pub(super) fn new() -> Download {
        Download {
            digest: Checksum::new(),
        }
    }

    /// The next chunk, or `None` once all arrived intact.
    pub(super) async fn next(
        &mut self,
        call: &mut EngineCall<'_>,
    ) -> Result<Option<Vec<u8>>, Failure> {
        match call.next().await {
            Ok(Some(EngineReply::Data(data))) => {
                self.digest.update(&data);
                Ok(Some(data))
            }
            Ok(Some(EngineReply::DataEnd(expected))) => {
                if self.digest.digest() == expected {
                    Ok(None)
                } else {
                    Err(Failure::Engine(
                        "checksum mismatch: the bytes were damaged on the way".into(),
                    ))
                }
            }
            Ok(Some(EngineReply::Error(e))) => Err(Failure::Engine(e)),
            Ok(Some(other)) => Err(Failure::Lost(format!("unexpected reply {other:?}"))),
            Ok(None) => Err(Failure::Lost("the engine ended the transfer early".into())),
            Err(e) => Err(e.into()),
        }
    }
}

/// A file the daemon made, removed on drop: the spool of the CLI's stdin.
pub(super) struct Spool {
    pub path: PathBuf,
}

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The local file a source names, spooling stdin from the CLI into the
/// session directory first (its lines must be counted before any is sent).
pub(super) async fn local_source(
    pool: &EnginePool,
    source: Source,
    out: &mut ReplySink,
) -> Result<(PathBuf, Option<Spool>), SessionError> {
    let path = match source {
        Source::Path(path) => return Ok((path, None)),
        Source::Stdin => {
            let dir = pool.dir().to_path_buf();
            dir.join(format!("stdin-{}.spool", std::process::id()))
        }
    };
    let path = unique(&path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)?;
    let spool = Spool { path: path.clone() };
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(QUEUE_DEPTH);
    let writer = tokio::task::spawn_blocking(move || -> io::Result<()> {
        while let Some(data) = rx.blocking_recv() {
            file.write_all(&data)?;
        }
        file.flush()
    });
    let mut abort = Abort::of(out);
    let mut input = out
        .take_input()
        .ok_or_else(|| SessionError::Refused("stdin was taken already".into()))?;
    let mut failed = None;
    // Reported as frames come (a read cut short by a timer could lose part
    // of a frame): a slow producer's bytes and rate, before the fan-out.
    let (mut spooled, mut reported) = (0u64, Instant::now());
    loop {
        let frame = tokio::select! {
            frame = read_frame(&mut input) => frame?,
            () = abort.wait() => {
                return Err(SessionError::Refused(
                    "aborted while reading stdin; nothing was sent".into(),
                ));
            }
        };
        match frame {
            Some(Request::Chunk(data)) => {
                spooled += data.len() as u64;
                if failed.is_none() && tx.send(data).await.is_err() {
                    failed = Some("the spool writer stopped");
                }
                if reported.elapsed() >= PROGRESS_EVERY {
                    reported = Instant::now();
                    let progress = Reply::Transfer {
                        done: spooled,
                        total: None,
                        all: None,
                    };
                    let _ = out.send(&progress).await;
                }
            }
            Some(Request::Eof) => break,
            _ => return Err(SessionError::Closed),
        }
    }
    drop(tx);
    writer
        .await
        .map_err(|e| io::Error::other(e.to_string()))??;
    if let Some(why) = failed {
        return Err(io::Error::other(why).into());
    }
    Ok((path, Some(spool)))
}

/// Several requests at once must not share a spool name.
fn unique(path: &Path) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    path.with_extension(format!("{n}.spool"))
}
