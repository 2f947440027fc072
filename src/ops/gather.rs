//! `pcl gather`: every target's array (or file), concatenated in engine
//! order.

use std::sync::Arc;

use super::abort::Abort;
use super::placement::{refuse_shared, same_files};
use super::pull::fetch_var;
use super::transfer::{Download, Failure, Outcome, report};
use crate::join_all;
use crate::protocol::data::{CHUNK, EngineData, check_name};
use crate::protocol::engine::EngineRequest;
use crate::protocol::session::{Reply, Stream};
use crate::session::{EnginePool, ReplySink, SessionError};

/// Arrays are small enough to fetch from all engines at once; the CLI gets
/// them in engine order, each element ended by a NUL.
pub(super) async fn var(
    pool: &Arc<EnginePool>,
    targets: &str,
    name: &str,
    out: &mut ReplySink,
) -> Result<(), SessionError> {
    check_name(name)?;
    let ids = out.targets(pool, targets)?;
    let fetched = join_all(ids.iter().map(|&id| {
        let (pool, name, mut abort) = (pool.clone(), name.to_string(), Abort::of(out));
        async move { abort.or("aborted", fetch_var(&pool, id, &name, true)).await }
    }))
    .await;
    for (id, value) in ids.into_iter().zip(fetched) {
        let outcome = match value {
            Ok(bytes) => {
                for piece in bytes.chunks(CHUNK) {
                    out.send(&Reply::Output {
                        id,
                        stream: Stream::Stdout,
                        data: piece.to_vec(),
                    })
                    .await?;
                }
                Ok(())
            }
            Err(failure) => Err(failure),
        };
        report(out, pool, id, &outcome).await?;
    }
    out.send(&Reply::Done).await
}

/// Files can be any size: each engine's is streamed through in turn, so
/// nothing is held whole.
pub(super) async fn file(
    pool: &Arc<EnginePool>,
    targets: &str,
    remote: &str,
    out: &mut ReplySink,
) -> Result<(), SessionError> {
    let ids = out.targets(pool, targets)?;
    let files = same_files(pool, &ids, remote)?;
    refuse_shared(pool, &files, remote, |path, n| {
        format!("{path} is one file for all {n} of them, so gather would print it {n} times")
    })?;
    let mut abort = Abort::of(out);
    for file in files {
        let id = file.first();
        let outcome = abort
            .or("aborted", stream_file(pool, id, &file.path, out))
            .await;
        report(out, pool, id, &outcome).await?;
    }
    out.send(&Reply::Done).await
}

async fn stream_file(pool: &EnginePool, id: u32, remote: &str, out: &mut ReplySink) -> Outcome {
    let op = EngineData::ReadFile {
        id,
        path: remote.to_string(),
    };
    let mut call = pool
        .call(
            id,
            &format!("gather --file {remote}"),
            &EngineRequest::Data(op),
        )
        .await
        .map_err(Failure::from)?;
    let mut download = Download::new();
    while let Some(data) = download.next(&mut call).await? {
        let reply = Reply::Output {
            id,
            stream: Stream::Stdout,
            data,
        };
        out.send(&reply)
            .await
            .map_err(|e| Failure::Lost(format!("the CLI went away: {e}")))?;
    }
    Ok(())
}
