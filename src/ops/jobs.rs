//! `jobs`, `wait`, `result`, `abort` and `interrupt`: the daemon's side of
//! async jobs and of stopping running work.

use std::sync::Arc;

use tokio::io::AsyncReadExt;

use super::After;
use crate::protocol::engine::EngineRequest;
use crate::protocol::session::{Reply, Request};
use crate::session::{EnginePool, Record, ReplySink, SessionError};

pub(crate) async fn run(
    pool: &Arc<EnginePool>,
    request: Request,
    out: &mut ReplySink,
) -> Result<After, SessionError> {
    let jobs = out.jobs().clone();
    match request {
        Request::Jobs => {
            let list = jobs.async_jobs().iter().map(|j| j.info()).collect();
            out.send(&Reply::Jobs(list)).await?;
        }
        Request::Wait(id) => {
            let waiting = match id {
                Some(id) => match jobs.get(id).filter(|j| j.is_async) {
                    Some(job) => vec![job],
                    None => return no_job(out, id).await,
                },
                None => jobs.async_jobs(),
            };
            for job in &waiting {
                job.wait().await;
            }
            let list = waiting.iter().map(|j| j.info()).collect();
            out.send(&Reply::Jobs(list)).await?;
        }
        Request::Result(id) => {
            let Some(job) = jobs.get(id).filter(|j| j.is_async) else {
                return no_job(out, id).await;
            };
            job.wait().await;
            out.send(&Reply::JobArgv(job.argv.clone())).await?;
            match job.record() {
                Record::Memory(frames) => out.send_raw(&frames).await?,
                Record::File(path) => {
                    let mut file = tokio::fs::File::open(&path).await?;
                    let mut buf = vec![0u8; 1 << 20];
                    loop {
                        let n = file.read(&mut buf).await?;
                        if n == 0 {
                            break;
                        }
                        out.send_raw(&buf[..n]).await?;
                    }
                }
                Record::Dropped(why) => out.send(&Reply::Error(why)).await?,
            }
            return Ok(After::Continue);
        }
        Request::Abort(id) => {
            let Some(job) = jobs.get(id) else {
                return no_job(out, id).await;
            };
            job.abort();
            interrupt(pool, &job.engines(), true).await;
        }
        Request::Interrupt { targets } => {
            let ids = out.targets(pool, &targets)?;
            interrupt(pool, &ids, false).await;
        }
        other => {
            out.send(&Reply::Error(format!("not a job request: {other:?}")))
                .await?;
            return Ok(After::Continue);
        }
    }
    out.send(&Reply::Done).await?;
    Ok(After::Continue)
}

async fn no_job(out: &mut ReplySink, id: u64) -> Result<After, SessionError> {
    out.send(&Reply::Error(format!(
        "no job {id} in this session: see pcl jobs"
    )))
    .await?;
    Ok(After::Continue)
}

/// SIGINT the running command of every engine in `ids`, all at once; an
/// engine that cannot be reached has nothing running to stop.
async fn interrupt(pool: &Arc<EnginePool>, ids: &[u32], cancel: bool) {
    let calls = ids.iter().map(|&id| {
        let pool = pool.clone();
        async move {
            if let Err(e) = pool
                .control(id, &EngineRequest::Interrupt { id, cancel })
                .await
            {
                eprintln!("interrupt: engine {id}: {e}");
            }
        }
    });
    crate::join_all(calls).await;
}
