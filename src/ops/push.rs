//! `pcl push`: shell variables, or a local file copied to every target.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use super::abort::Abort;
use super::placement::same_files;
use super::transfer::{Failure, Outcome, Upload, feed, local_source, report, store, with_progress};
use crate::join_all;
use crate::protocol::data::{EngineData, Source, check_name, open_regular};
use crate::protocol::remote::RemoteTemplate;
use crate::protocol::session::Reply;
use crate::session::{EnginePool, ReplySink, SessionError};

pub(super) async fn vars(
    pool: &Arc<EnginePool>,
    targets: &str,
    vars: Vec<(String, serde_bytes::ByteBuf)>,
    out: &mut ReplySink,
) -> Result<(), SessionError> {
    for (name, _) in &vars {
        check_name(name)?;
    }
    let ids = out.targets(pool, targets)?;
    let job = format!(
        "push {}",
        vars.iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let outcomes = join_all(ids.iter().map(|&id| {
        let (pool, job) = (pool.clone(), job.clone());
        let op = EngineData::SetVars {
            id,
            vars: vars.clone(),
        };
        async move { store(&pool, id, &job, op).await }
    }))
    .await;
    for (id, outcome) in ids.into_iter().zip(outcomes) {
        report(out, pool, id, &outcome).await?;
    }
    out.send(&Reply::Done).await
}

pub(super) async fn file(
    pool: &Arc<EnginePool>,
    targets: &str,
    from: Source,
    remote: &str,
    out: &mut ReplySink,
) -> Result<(), SessionError> {
    RemoteTemplate::parse(remote)?;
    // Stdin is spooled first, like scatter's: the same simple fan-out then.
    let (local, _spool) = local_source(pool, from, out).await?;
    let local = local.as_path();
    let cannot =
        |e: std::io::Error| SessionError::Refused(format!("cannot read {}: {e}", local.display()));
    let mut reader = open_regular(local).map_err(cannot)?;
    let size = reader.metadata().map_err(cannot)?.len();
    let ids = out.targets(pool, targets)?;
    let files = same_files(pool, &ids, remote)?;
    let abort = Abort::of(out);
    // One copy per file: engines sharing a workdir share the file, so the
    // first of them receives it for all.
    let uploads: Vec<Upload> = files
        .iter()
        .map(|file| {
            let op = EngineData::WriteFile {
                id: file.first(),
                path: file.path.clone(),
            };
            let job = format!("push --file {remote}");
            Upload::start(pool, file.first(), job, op, abort.clone())
        })
        .collect();
    let queues: Vec<_> = uploads.iter().map(|u| u.queue.clone()).collect();
    let progress = Arc::new(AtomicU64::new(0));
    let counter = progress.clone();
    let reading =
        tokio::task::spawn_blocking(move || feed(&mut reader, 0, size, &queues, &counter));
    let read = with_progress(out, &progress, Some(size), reading).await;
    let read = match read {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("reading {} failed: {e}", local.display())),
        Err(e) => Err(format!("internal error: {e}")),
    };
    let mut outcomes: Vec<Outcome> = Vec::new();
    for upload in uploads {
        outcomes.push(match (&read, upload.outcome().await) {
            // The engines only saw the transfer stop; the reason is here.
            (Err(why), Err(_)) => Err(Failure::Engine(why.clone())),
            (_, outcome) => outcome,
        });
    }
    for id in ids {
        let (file, outcome) = files
            .iter()
            .zip(&outcomes)
            .find(|(file, _)| file.ids.contains(&id))
            .expect("every target has its file");
        out.send(&Reply::WrittenBy {
            id,
            by: file.first(),
        })
        .await?;
        report(out, pool, id, outcome).await?;
    }
    out.send(&Reply::Done).await
}
