//! `pcl px`: run a command in every target engine's shell. Every engine
//! runs at once; answers go to the CLI in engine order, the engine whose
//! turn it is as its output comes, or (streaming) every engine's output as
//! it comes, each engine answered when it ends.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::{Mutex, mpsc};

use super::After;
use super::held_output::HeldOutput;
use crate::protocol::data::CHUNK;
use crate::protocol::engine::{EngineReply, EngineRequest, ExecEvent, ExecOutcome};
use crate::protocol::session::{EngineDone, Reply, Stream};
use crate::protocol::status;
use crate::protocol::verbs::PxRequest;
use crate::session::{EngineCondition, EnginePool, PoolError, ReplySink, SessionError};

/// Output held in memory while waiting for its turn, over all engines and
/// both streams of one px; the rest waits on disk.
const HELD_IN_MEMORY: usize = 32 << 20;

/// Pieces of live output on their way to the CLI.
const LIVE_QUEUE: usize = 64;

/// One engine's run, shared by its task and the loop that answers the CLI.
/// Until the engine is `live`, its output is held for its turn; from then
/// on it goes to that loop as it comes.
struct Shared {
    live: Option<mpsc::Sender<Piece>>,
    /// Output held for the engine's turn (stdout, stderr); taken when it
    /// goes live or answers.
    held: Option<(HeldOutput, HeldOutput)>,
    status: i32,
    note: Option<String>,
    /// Why part of the output is missing.
    lost: Option<String>,
}

type Slot = Arc<Mutex<Shared>>;

struct Piece {
    id: u32,
    stream: Stream,
    data: Vec<u8>,
}

impl Shared {
    fn new(dir: PathBuf, limit: usize, live: Option<mpsc::Sender<Piece>>) -> Shared {
        Shared {
            live,
            held: Some((
                HeldOutput::new(dir.clone(), limit),
                HeldOutput::new(dir, limit),
            )),
            status: status::UNREACHABLE,
            note: None,
            lost: None,
        }
    }

    async fn hold(&mut self, stream: Stream, data: &[u8]) {
        let Some((stdout, stderr)) = &mut self.held else {
            return;
        };
        if self.lost.is_some() {
            return;
        }
        let held = match stream {
            Stream::Stdout => stdout,
            Stream::Stderr => stderr,
        };
        if let Err(e) = held.push(data).await {
            self.lost = Some(format!(
                "part of its output was lost: cannot hold it on disk: {e}"
            ));
        }
    }
}

/// One piece of an engine's output: to the CLI now if the engine is live,
/// else held for its turn.
async fn keep(slot: &Slot, id: u32, stream: Stream, data: Vec<u8>) {
    let live = {
        let mut shared = slot.lock().await;
        match &shared.live {
            Some(live) => live.clone(),
            None => return shared.hold(stream, &data).await,
        }
    };
    let _ = live.send(Piece { id, stream, data }).await;
}

/// Tells the answering loop an engine's task is over, also if it panicked.
struct Finish {
    index: usize,
    done: mpsc::UnboundedSender<usize>,
}

impl Drop for Finish {
    fn drop(&mut self) {
        let _ = self.done.send(self.index);
    }
}

pub(crate) async fn run(
    pool: &Arc<EnginePool>,
    request: PxRequest,
    out: &mut ReplySink,
) -> Result<After, SessionError> {
    let ids = out.targets(pool, &request.targets)?;
    out.send(&Reply::Targets(ids.clone())).await?;
    let dir = pool.dir().to_path_buf();
    let limit = (HELD_IN_MEMORY / (2 * ids.len().max(1))).max(64 << 10);
    let request = Arc::new(request);
    let (live, mut pieces) = mpsc::channel::<Piece>(LIVE_QUEUE);
    let (done_tx, mut done) = mpsc::unbounded_channel::<usize>();
    let slots: Vec<Slot> = ids
        .iter()
        .map(|_| {
            let live = request.stream.then(|| live.clone());
            Arc::new(Mutex::new(Shared::new(dir.clone(), limit, live)))
        })
        .collect();
    for run in pool.by_host(&ids) {
        let parts = run
            .into_iter()
            .map(|index| Part {
                id: ids[index],
                slot: slots[index].clone(),
                _finish: Finish {
                    index,
                    done: done_tx.clone(),
                },
            })
            .collect();
        let (pool, request) = (pool.clone(), request.clone());
        tokio::spawn(async move { exec(&pool, parts, &request).await });
    }
    drop(done_tx);
    let mut turn = 0;
    if !request.stream && !slots.is_empty() {
        go_live(&slots[0], &live, ids[0], out).await?;
    }
    let mut finished = vec![false; ids.len()];
    let mut answered = 0;
    while answered < ids.len() {
        tokio::select! {
            // A piece sent before its engine finished goes out before the
            // engine's answer.
            biased;
            Some(Piece { id, stream, data }) = pieces.recv() => {
                out.queue(&Reply::Output { id, stream, data }).await?;
            }
            index = done.recv() => {
                let Some(index) = index else { break };
                finished[index] = true;
                out.queue(&Reply::Finished(ids[index])).await?;
                if request.stream {
                    answer(pool, &slots[index], ids[index], out).await?;
                    answered += 1;
                }
            }
        }
        while !request.stream && turn < ids.len() && finished[turn] {
            answer(pool, &slots[turn], ids[turn], out).await?;
            answered += 1;
            turn += 1;
            if turn < ids.len() {
                go_live(&slots[turn], &live, ids[turn], out).await?;
            }
        }
        // What came in one burst (a thousand engines' ends) goes in one
        // write; anything alone goes at once.
        if pieces.is_empty() && done.is_empty() {
            out.flush().await?;
        }
    }
    out.send(&Reply::Done).await?;
    Ok(After::Continue)
}

/// The engine's turn: what it printed so far goes out, the rest as it comes.
async fn go_live(
    slot: &Slot,
    live: &mpsc::Sender<Piece>,
    id: u32,
    out: &mut ReplySink,
) -> Result<(), SessionError> {
    let (held, mut lost) = {
        let mut shared = slot.lock().await;
        shared.live = Some(live.clone());
        (shared.held.take(), shared.lost.take())
    };
    if let Some(mut held) = held {
        send_held(&mut held, id, &mut lost, out).await?;
    }
    slot.lock().await.lost = lost;
    Ok(())
}

/// The engine ended: whatever it still holds, then how it ended.
async fn answer(
    pool: &EnginePool,
    slot: &Slot,
    id: u32,
    out: &mut ReplySink,
) -> Result<(), SessionError> {
    let mut shared = slot.lock().await;
    if let Some(mut held) = shared.held.take() {
        send_held(&mut held, id, &mut shared.lost, out).await?;
    }
    let (mut status, mut note) = (shared.status, shared.note.take());
    if let Some(lost) = shared.lost.take() {
        status = status.max(status::FAILURE);
        note = Some(match note {
            Some(note) => format!("{note}; {lost}"),
            None => lost,
        });
    }
    out.queue(&Reply::EngineDone(EngineDone {
        id,
        host: pool.host_of(id),
        status,
        note,
    }))
    .await
}

/// Held output to the CLI: stdout, then stderr.
async fn send_held(
    (stdout, stderr): &mut (HeldOutput, HeldOutput),
    id: u32,
    lost: &mut Option<String>,
    out: &mut ReplySink,
) -> Result<(), SessionError> {
    for (stream, held) in [(Stream::Stdout, stdout), (Stream::Stderr, stderr)] {
        loop {
            let data = match held.next_piece(CHUNK).await {
                Ok(Some(data)) => data,
                Ok(None) => break,
                Err(e) => {
                    lost.get_or_insert(format!(
                        "part of its output was lost: cannot read it back: {e}"
                    ));
                    break;
                }
            };
            out.queue(&Reply::Output { id, stream, data }).await?;
        }
    }
    Ok(())
}

/// One engine's share of a px run on its host.
struct Part {
    id: u32,
    slot: Slot,
    /// Dropped once the slot holds the engine's end.
    _finish: Finish,
}

impl Part {
    async fn end(self, status: i32, note: Option<String>) {
        let mut shared = self.slot.lock().await;
        shared.status = status;
        shared.note = note;
    }
}

/// Run the command on the engines of one host (`parts`), on one request:
/// each engine's output goes through `keep`, and its status and pcl's note
/// about it into its slot as soon as it ends.
async fn exec(pool: &EnginePool, parts: Vec<Part>, request: &PxRequest) {
    let mut parts: Vec<Part> = {
        let (mut live, mut dead) = (Vec::new(), Vec::new());
        for part in parts {
            match pool.state(part.id) {
                EngineCondition::Dead(reason) => dead.push((part, reason)),
                _ => live.push(part),
            }
        }
        for (part, reason) in dead {
            let why = PoolError::Dead {
                id: part.id,
                reason,
            };
            part.end(why.status(), Some(why.to_string())).await;
        }
        live
    };
    if parts.is_empty() {
        return;
    }
    let ids: Vec<u32> = parts.iter().map(|part| part.id).collect();
    let engine_request = EngineRequest::Exec {
        ids: ids.clone(),
        command: request.command.clone(),
        timeout_ms: request.timeout_ms,
    };
    let mut call = match pool
        .call_each(&ids, &format!("px {}", request.command), &engine_request)
        .await
    {
        Ok(call) => call,
        Err(e) => {
            for part in parts {
                let why = e.of_engine(part.id);
                part.end(why.status(), Some(why.to_string())).await;
            }
            return;
        }
    };
    while !parts.is_empty() {
        let (id, event) = match call.next().await {
            Ok(Some(EngineReply::Exec { id, event })) => (id, event),
            Ok(other) => {
                for part in parts {
                    let why = match &other {
                        Some(other) => format!("unexpected reply {other:?}"),
                        None => format!("engine {} ended the request without an answer", part.id),
                    };
                    part.end(status::UNREACHABLE, Some(why)).await;
                }
                return;
            }
            Err(e) => {
                for part in parts {
                    let why = call.cut_off(part.id, &e);
                    part.end(why.status(), Some(why.to_string())).await;
                }
                return;
            }
        };
        let Some(at) = parts.iter().position(|part| part.id == id) else {
            continue;
        };
        let (status, note) = match event {
            ExecEvent::Stdout(data) => {
                keep(&parts[at].slot, id, Stream::Stdout, data).await;
                continue;
            }
            ExecEvent::Stderr(data) => {
                keep(&parts[at].slot, id, Stream::Stderr, data).await;
                continue;
            }
            ExecEvent::Done(end) => {
                let note = match end.outcome {
                    ExecOutcome::Finished => None,
                    ExecOutcome::TimedOut => Some(format!(
                        "timed out after {} s; the command was killed, the shell kept its state",
                        request.timeout_ms.unwrap_or(0) as f64 / 1000.0
                    )),
                    ExecOutcome::ShellRestarted(why) => Some(why),
                };
                (end.status, note)
            }
            ExecEvent::Error(e) => (status::UNREACHABLE, Some(e)),
        };
        call.finished(id);
        parts.swap_remove(at).end(status, note).await;
    }
}
