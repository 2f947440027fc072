//! `pcl scatter`: items or lines split into contiguous blocks in engine
//! order; engine k gets its block as a bash array, or as a file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::abort::Abort;
use super::lines::{block_ranges, block_sizes};
use super::placement::{refuse_shared, same_files};
use super::transfer::{Failure, Upload, feed, feed_bytes, local_source, report, with_progress};
use crate::join_all;
use crate::protocol::data::{
    DataError, EngineData, Items, Source, check_name, count_lines, open_regular,
};
use crate::protocol::session::Reply;
use crate::session::{EnginePool, ReplySink, SessionError};

pub(super) async fn var(
    pool: &Arc<EnginePool>,
    targets: &str,
    name: &str,
    items: Items,
    out: &mut ReplySink,
) -> Result<(), SessionError> {
    check_name(name)?;
    let ids = out.targets(pool, targets)?;
    let nul = matches!(items, Items::Args(_));
    let first = |id| EngineData::LoadArray {
        id,
        name: name.to_string(),
        nul,
    };
    let job = format!("scatter {name}");
    match items {
        Items::Args(items) => {
            if items.iter().any(|item| item.contains(&0)) {
                return Err(DataError::Nul("an item".into()).into());
            }
            let sizes = block_sizes(items.len() as u64, ids.len());
            let mut uploads = Vec::new();
            let mut rest = &items[..];
            for (&id, &size) in ids.iter().zip(&sizes) {
                let (block, tail) = rest.split_at(size as usize);
                rest = tail;
                // Each element ended by a NUL: any other byte may be in it.
                let bytes: Vec<u8> = block
                    .iter()
                    .flat_map(|item| item.iter().copied().chain([0]))
                    .collect();
                let upload = Upload::start(pool, id, job.clone(), first(id), Abort::of(out));
                let queue = upload.queue.clone();
                tokio::task::spawn_blocking(move || feed_bytes(&bytes, &queue));
                uploads.push(upload);
            }
            finish(pool, &ids, uploads, Ok(()), out).await
        }
        Items::Lines(source) => {
            let (path, _spool) = local_source(pool, source, out).await?;
            let ranges = split(&path, ids.len(), true).await?;
            send_blocks(pool, &ids, &path, ranges, job, first, out).await
        }
    }
}

pub(super) async fn file(
    pool: &Arc<EnginePool>,
    targets: &str,
    remote: &str,
    from: Source,
    out: &mut ReplySink,
) -> Result<(), SessionError> {
    let ids = out.targets(pool, targets)?;
    let files = same_files(pool, &ids, remote)?;
    refuse_shared(pool, &files, remote, |path, _| {
        format!("their blocks would overwrite one another in {path}")
    })?;
    // One engine per file now.
    let paths: HashMap<u32, String> = files.into_iter().map(|f| (f.first(), f.path)).collect();
    let (path, _spool) = local_source(pool, from, out).await?;
    let ranges = split(&path, ids.len(), false).await?;
    let first = |id| EngineData::WriteFile {
        id,
        path: paths[&id].clone(),
    };
    let job = format!("scatter --file {remote}");
    send_blocks(pool, &ids, &path, ranges, job, first, out).await
}

/// The byte ranges of `n` blocks of whole lines of `path`: two streaming
/// passes, one to count, one to find the boundaries.
async fn split(path: &Path, n: usize, for_shell: bool) -> Result<Vec<(u64, u64)>, SessionError> {
    let path = path.to_path_buf();
    let shown = path.display().to_string();
    let result = tokio::task::spawn_blocking(move || {
        let count = count_lines(&mut open_regular(&path)?)?;
        if let (true, Some(line)) = (for_shell, count.nul_line) {
            return Ok(Err(DataError::Nul(format!("line {line}"))));
        }
        let sizes = block_sizes(count.lines, n);
        block_ranges(&path, &sizes, count.bytes).map(Ok)
    })
    .await
    .map_err(|e| SessionError::Refused(format!("internal error: {e}")))?;
    match result {
        Ok(Ok(ranges)) => Ok(ranges),
        Ok(Err(e)) => Err(e.into()),
        Err(e) => Err(SessionError::Refused(format!("cannot read {shown}: {e}"))),
    }
}

/// Engine k gets range k of `path`; every engine is fed at once.
async fn send_blocks(
    pool: &Arc<EnginePool>,
    ids: &[u32],
    path: &Path,
    ranges: Vec<(u64, u64)>,
    job: String,
    first: impl Fn(u32) -> EngineData,
    out: &mut ReplySink,
) -> Result<(), SessionError> {
    let total: u64 = ranges.iter().map(|(_, len)| len).sum();
    let progress = Arc::new(AtomicU64::new(0));
    let mut uploads = Vec::new();
    let mut readers = Vec::new();
    for (&id, (offset, len)) in ids.iter().zip(ranges) {
        let upload = Upload::start(pool, id, job.clone(), first(id), Abort::of(out));
        let queue = upload.queue.clone();
        let (path, progress): (PathBuf, _) = (path.to_path_buf(), progress.clone());
        readers.push(async move {
            tokio::task::spawn_blocking(move || {
                let mut file = std::fs::File::open(&path)?;
                feed(&mut file, offset, len, &[queue], &progress)
            })
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())))
        });
        uploads.push(upload);
    }
    let read = with_progress(
        out,
        || progress.load(Ordering::Relaxed),
        || None,
        Some(total),
        join_all(readers),
    )
    .await;
    let read = read.into_iter().find_map(Result::err).map_or(Ok(()), |e| {
        Err(format!("reading {} failed: {e}", path.display()))
    });
    finish(pool, ids, uploads, read, out).await
}

async fn finish(
    pool: &EnginePool,
    ids: &[u32],
    uploads: Vec<Upload>,
    read: Result<(), String>,
    out: &mut ReplySink,
) -> Result<(), SessionError> {
    for (&id, upload) in ids.iter().zip(uploads) {
        let outcome = match (&read, upload.outcome().await) {
            (Err(why), Err(_)) => Err(Failure::Engine(why.clone())),
            (_, outcome) => outcome,
        };
        report(out, pool, id, &outcome).await?;
    }
    out.send(&Reply::Done).await
}
