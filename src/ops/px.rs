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
use crate::protocol::engine::{EngineReply, EngineRequest, ExecOutcome};
use crate::protocol::session::{EngineDone, Reply, Stream};
use crate::protocol::status;
use crate::protocol::verbs::PxRequest;
use crate::session::{EnginePool, ReplySink, SessionError};

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
    for (index, (&id, slot)) in ids.iter().zip(&slots).enumerate() {
        let (pool, request, slot) = (pool.clone(), request.clone(), slot.clone());
        let finish = Finish {
            index,
            done: done_tx.clone(),
        };
        tokio::spawn(async move {
            let _finish = finish;
            exec(&pool, id, &request, &slot).await;
        });
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
                out.send(&Reply::Output { id, stream, data }).await?;
            }
            index = done.recv() => {
                let Some(index) = index else { break };
                finished[index] = true;
                out.send(&Reply::Finished(ids[index])).await?;
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
    out.send(&Reply::EngineDone(EngineDone {
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
            out.send(&Reply::Output { id, stream, data }).await?;
        }
    }
    Ok(())
}

/// Run the command on engine `id`; its output goes through `keep`, its
/// status and pcl's note about it into the slot.
async fn exec(pool: &EnginePool, id: u32, request: &PxRequest, slot: &Slot) {
    let engine_request = EngineRequest::Exec {
        id,
        command: request.command.clone(),
        timeout_ms: request.timeout_ms,
    };
    let (status, note) = match pool
        .call(id, &format!("px {}", request.command), &engine_request)
        .await
    {
        Err(e) => (e.status(), Some(e.to_string())),
        Ok(mut call) => loop {
            match call.next().await {
                Ok(Some(EngineReply::Stdout(data))) => keep(slot, id, Stream::Stdout, data).await,
                Ok(Some(EngineReply::Stderr(data))) => keep(slot, id, Stream::Stderr, data).await,
                Ok(Some(EngineReply::Done(end))) => {
                    let note = match end.outcome {
                        ExecOutcome::Finished => None,
                        ExecOutcome::TimedOut => Some(format!(
                            "timed out after {} s; the command was killed, the shell kept its state",
                            request.timeout_ms.unwrap_or(0) as f64 / 1000.0
                        )),
                        ExecOutcome::ShellRestarted(why) => Some(why),
                    };
                    break (end.status, note);
                }
                Ok(Some(EngineReply::Error(e))) => break (status::UNREACHABLE, Some(e)),
                Ok(Some(other)) => {
                    break (
                        status::UNREACHABLE,
                        Some(format!("unexpected reply {other:?}")),
                    );
                }
                Ok(None) => {
                    break (
                        status::UNREACHABLE,
                        Some(format!("engine {id} ended the request without an answer")),
                    );
                }
                Err(e) => break (e.status(), Some(e.to_string())),
            }
        },
    };
    let mut shared = slot.lock().await;
    shared.status = status;
    shared.note = note;
}
