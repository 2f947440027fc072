//! `pcl px`: run a command in every target engine's shell.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::After;
use crate::protocol::engine::{EngineReply, EngineRequest, ExecOutcome};
use crate::protocol::session::{EngineDone, Reply, Stream};
use crate::session::{EnginePool, ReplySink, SessionError};

/// Exit status reported for an engine that could not run the command.
pub const UNREACHABLE_STATUS: i32 = 255;

/// Output goes to the CLI in pieces no larger than this.
const CHUNK: usize = 1 << 20;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PxRequest {
    pub targets: String,
    pub command: String,
    pub timeout_ms: Option<u64>,
}

struct EngineRun {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    status: i32,
    note: Option<String>,
}

pub async fn run(
    pool: &Arc<EnginePool>,
    request: PxRequest,
    out: &mut ReplySink,
) -> Result<After, SessionError> {
    let ids = pool.resolve(&request.targets)?;
    out.set_engines(&ids);
    let request = Arc::new(request);
    let runs = ids.iter().map(|&id| {
        let pool = pool.clone();
        let request = request.clone();
        async move { exec(&pool, id, &request).await }
    });
    // Every engine runs at once; answers go out in id order.
    let handles: Vec<_> = runs.map(tokio::spawn).collect();
    for (id, handle) in ids.into_iter().zip(handles) {
        let run = handle.await.unwrap_or_else(|e| EngineRun {
            stdout: Vec::new(),
            stderr: Vec::new(),
            status: UNREACHABLE_STATUS,
            note: Some(format!("internal error: {e}")),
        });
        for (stream, bytes) in [(Stream::Stdout, run.stdout), (Stream::Stderr, run.stderr)] {
            for piece in bytes.chunks(CHUNK) {
                out.send(&Reply::Output {
                    id,
                    stream,
                    data: piece.to_vec(),
                })
                .await?;
            }
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

async fn exec(pool: &EnginePool, id: u32, request: &PxRequest) -> EngineRun {
    let mut run = EngineRun {
        stdout: Vec::new(),
        stderr: Vec::new(),
        status: UNREACHABLE_STATUS,
        note: None,
    };
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
        Err(reason) => {
            run.note = Some(reason);
            return run;
        }
    };
    loop {
        match call.next().await {
            Ok(Some(EngineReply::Stdout(data))) => run.stdout.extend(data),
            Ok(Some(EngineReply::Stderr(data))) => run.stderr.extend(data),
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
            Err(reason) => {
                run.note = Some(reason);
                return run;
            }
        }
    }
}
