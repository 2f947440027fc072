//! `pcl push`: shell variables, or a local file copied to every target.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::abort::Abort;
use super::placement::same_files;
use super::relay;
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
    let job = format!("push --file {remote}");
    // One copy per file: engines sharing a workdir share the file, so the
    // first of them receives it for all. Hosts their peers can reach get
    // it relayed; the others straight from here.
    let peers: Vec<_> = files.iter().map(|f| pool.relay_peer(f.first())).collect();
    let chain = relay::members(&peers);
    let relayed_hosts: Vec<relay::Host> = chain
        .iter()
        .map(|&i| relay::Host {
            id: files[i].first(),
            path: files[i].path.clone(),
            peer: peers[i].clone().expect("a member has a peer address"),
        })
        .collect();
    let direct: Vec<usize> = (0..files.len()).filter(|i| !chain.contains(i)).collect();
    let uploads: Vec<Upload> = direct
        .iter()
        .map(|&i| {
            let op = EngineData::WriteFile {
                id: files[i].first(),
                path: files[i].path.clone(),
            };
            Upload::start(pool, files[i].first(), job.clone(), op, abort.clone())
        })
        .collect();
    let queues: Vec<_> = uploads.iter().map(|u| u.queue.clone()).collect();
    let read_progress = Arc::new(AtomicU64::new(if queues.is_empty() { size } else { 0 }));
    let counter = read_progress.clone();
    let reading = tokio::task::spawn_blocking(move || {
        if queues.is_empty() {
            return Ok(());
        }
        feed(&mut reader, 0, size, &queues, &counter)
    });
    let relay_progress = relay::Progress::new(if chain.is_empty() { size } else { 0 });
    let relaying = relay::push(
        pool,
        relayed_hosts,
        job,
        local,
        size,
        &relay_progress,
        abort,
    );
    let slowest = || {
        read_progress
            .load(Ordering::Relaxed)
            .min(relay_progress.slowest.load(Ordering::Relaxed))
    };
    // A direct copy's bytes are about the bytes read: its queue is short.
    let all = || {
        let direct = read_progress.load(Ordering::Relaxed) * direct.len() as u64;
        (files.len() > 1).then(|| direct + relay_progress.all.load(Ordering::Relaxed))
    };
    let both = async { tokio::join!(reading, relaying) };
    let (read, relayed) = with_progress(out, slowest, all, Some(size), both).await;
    if let Some(remark) = relayed.remark {
        out.send(&Reply::Remark(remark)).await?;
    }
    let read = match read {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("reading {} failed: {e}", local.display())),
        Err(e) => Err(format!("internal error: {e}")),
    };
    let mut outcomes: Vec<Option<Outcome>> = vec![None; files.len()];
    for (&i, upload) in direct.iter().zip(uploads) {
        outcomes[i] = Some(match (&read, upload.outcome().await) {
            // The engines only saw the transfer stop; the reason is here.
            (Err(why), Err(_)) => Err(Failure::Engine(why.clone())),
            (_, outcome) => outcome,
        });
    }
    for (&i, outcome) in chain.iter().zip(relayed.outcomes) {
        outcomes[i] = Some(outcome);
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
        let outcome = outcome.as_ref().expect("every file has an outcome");
        report(out, pool, id, outcome).await?;
    }
    out.send(&Reply::Done).await
}
