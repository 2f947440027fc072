//! `pcl px`: run a command in every target engine's shell.

use std::path::PathBuf;
use std::sync::Arc;

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

struct EngineRun {
    stdout: HeldOutput,
    stderr: HeldOutput,
    status: i32,
    note: Option<String>,
    /// Why part of the output is missing.
    lost: Option<String>,
}

impl EngineRun {
    fn new(dir: PathBuf, limit: usize) -> EngineRun {
        EngineRun {
            stdout: HeldOutput::new(dir.clone(), limit),
            stderr: HeldOutput::new(dir, limit),
            status: status::UNREACHABLE,
            note: None,
            lost: None,
        }
    }

    async fn keep(&mut self, stream: Stream, data: &[u8]) {
        if self.lost.is_some() {
            return;
        }
        let held = match stream {
            Stream::Stdout => &mut self.stdout,
            Stream::Stderr => &mut self.stderr,
        };
        if let Err(e) = held.push(data).await {
            self.lost = Some(format!(
                "part of its output was lost: cannot hold it on disk: {e}"
            ));
        }
    }
}

pub(crate) async fn run(
    pool: &Arc<EnginePool>,
    request: PxRequest,
    out: &mut ReplySink,
) -> Result<After, SessionError> {
    let ids = out.targets(pool, &request.targets)?;
    let dir = pool.dir().to_path_buf();
    let limit = (HELD_IN_MEMORY / (2 * ids.len().max(1))).max(64 << 10);
    let request = Arc::new(request);
    let runs = ids.iter().map(|&id| {
        let pool = pool.clone();
        let request = request.clone();
        let run = EngineRun::new(dir.clone(), limit);
        async move { exec(&pool, id, &request, run).await }
    });
    // Every engine runs at once; answers go out in id order.
    let handles: Vec<_> = runs.map(tokio::spawn).collect();
    for (id, handle) in ids.into_iter().zip(handles) {
        let mut run = handle.await.unwrap_or_else(|e| {
            let mut run = EngineRun::new(dir.clone(), 0);
            run.note = Some(format!("internal error: {e}"));
            run
        });
        for (stream, held) in [
            (Stream::Stdout, &mut run.stdout),
            (Stream::Stderr, &mut run.stderr),
        ] {
            loop {
                let data = match held.next_piece(CHUNK).await {
                    Ok(Some(data)) => data,
                    Ok(None) => break,
                    Err(e) => {
                        run.lost.get_or_insert(format!(
                            "part of its output was lost: cannot read it back: {e}"
                        ));
                        break;
                    }
                };
                out.send(&Reply::Output { id, stream, data }).await?;
            }
        }
        if let Some(lost) = run.lost {
            run.status = run.status.max(status::FAILURE);
            run.note = Some(match run.note {
                Some(note) => format!("{note}; {lost}"),
                None => lost,
            });
        }
        out.send(&Reply::EngineDone(EngineDone {
            id,
            host: pool.host_of(id),
            status: run.status,
            note: run.note,
        }))
        .await?;
    }
    out.send(&Reply::Done).await?;
    Ok(After::Continue)
}

async fn exec(pool: &EnginePool, id: u32, request: &PxRequest, mut run: EngineRun) -> EngineRun {
    let engine_request = EngineRequest::Exec {
        id,
        command: request.command.clone(),
        timeout_ms: request.timeout_ms,
    };
    let mut call = match pool
        .call(id, &format!("px {}", request.command), &engine_request)
        .await
    {
        Ok(call) => call,
        Err(e) => {
            run.status = e.status();
            run.note = Some(e.to_string());
            return run;
        }
    };
    loop {
        match call.next().await {
            Ok(Some(EngineReply::Stdout(data))) => run.keep(Stream::Stdout, &data).await,
            Ok(Some(EngineReply::Stderr(data))) => run.keep(Stream::Stderr, &data).await,
            Ok(Some(EngineReply::Done(end))) => {
                run.status = end.status;
                run.note = match end.outcome {
                    ExecOutcome::Finished => None,
                    ExecOutcome::TimedOut => Some(format!(
                        "timed out after {} s; the command was killed, the shell kept its state",
                        request.timeout_ms.unwrap_or(0) as f64 / 1000.0
                    )),
                    ExecOutcome::ShellRestarted(why) => Some(why),
                };
                return run;
            }
            Ok(Some(EngineReply::Error(e))) => {
                run.note = Some(e);
                return run;
            }
            Ok(Some(other)) => {
                run.note = Some(format!("unexpected reply {other:?}"));
                return run;
            }
            Ok(None) => {
                run.note = Some(format!("engine {id} ended the request without an answer"));
                return run;
            }
            Err(e) => {
                run.status = e.status();
                run.note = Some(e.to_string());
                return run;
            }
        }
    }
}
