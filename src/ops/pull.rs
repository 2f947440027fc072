//! `pcl pull`: variables' values, or a remote file fetched from every
//! target as `DEST/REMOTE.<ID>`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;

use super::abort::Abort;
use super::placement::{same_files, sharers};
use super::transfer::{ABORTED, Download, Failure, Outcome, report, with_progress};
use crate::join_all;
use crate::protocol::data::{CHUNK, EngineData, check_name, check_remote};
use crate::protocol::engine::EngineRequest;
use crate::protocol::session::Reply;
use crate::session::{EnginePool, ReplySink, SessionError};
use crate::whole_file::WholeFile;

/// One variable of one engine: its bytes or why there are none.
pub(super) type Fetched = (String, Result<Vec<u8>, Failure>);

/// The value of variable `name` (`array`: NUL-ended elements) on `id`.
pub(super) async fn fetch_var(
    pool: &EnginePool,
    id: u32,
    name: &str,
    array: bool,
) -> Result<Vec<u8>, Failure> {
    let op = EngineData::GetVar {
        id,
        name: name.to_string(),
        array,
    };
    let verb = if array { "gather" } else { "pull" };
    let mut call = pool
        .call(id, &format!("{verb} {name}"), &EngineRequest::Data(op))
        .await
        .map_err(Failure::from)?;
    let (mut value, mut download) = (Vec::new(), Download::new());
    while let Some(data) = download.next(&mut call).await? {
        value.extend(data);
    }
    Ok(value)
}

pub(super) async fn vars(
    pool: &Arc<EnginePool>,
    targets: &str,
    names: Vec<String>,
    single: bool,
    out: &mut ReplySink,
) -> Result<(), SessionError> {
    for name in &names {
        check_name(name)?;
    }
    let ids = out.targets(pool, targets)?;
    if single && ids.len() != 1 {
        return Err(SessionError::Refused(format!(
            "--raw needs exactly one target engine; `{targets}` names {}",
            ids.len()
        )));
    }
    let names = Arc::new(names);
    let fetched = join_all(ids.iter().map(|&id| {
        let (pool, names, mut abort) = (pool.clone(), names.clone(), Abort::of(out));
        async move {
            let mut values: Vec<Fetched> = Vec::new();
            for name in names.iter() {
                let value = abort.or("aborted", fetch_var(&pool, id, name, false));
                values.push((name.clone(), value.await));
            }
            values
        }
    }))
    .await;
    for (id, values) in ids.into_iter().zip(fetched) {
        let mut worst: Option<Failure> = None;
        let mut notes = Vec::new();
        for (name, value) in values {
            match value {
                Ok(bytes) => {
                    // An empty value still says that the variable exists.
                    let mut pieces: Vec<&[u8]> = bytes.chunks(CHUNK).collect();
                    if pieces.is_empty() {
                        pieces.push(&[]);
                    }
                    for piece in pieces {
                        out.send(&Reply::Value {
                            id,
                            name: name.clone(),
                            data: piece.to_vec(),
                        })
                        .await?;
                    }
                }
                Err(failure) => {
                    notes.push(failure.message().to_string());
                    if worst.as_ref().is_none_or(|w| w.status() < failure.status()) {
                        worst = Some(failure);
                    }
                }
            }
        }
        let outcome: Outcome = match worst {
            None => Ok(()),
            Some(Failure::Engine(_)) => Err(Failure::Engine(notes.join("; "))),
            Some(Failure::Lost(_)) => Err(Failure::Lost(notes.join("; "))),
            Some(Failure::Aborted(_)) => Err(Failure::Aborted(notes.join("; "))),
        };
        report(out, pool, id, &outcome).await?;
    }
    out.send(&Reply::Done).await
}

/// Each target's REMOTE as `DEST/REMOTE.<ID>`; a file that engines
/// sharing a workdir share is fetched once, from the first live one. An
/// async job keeps the files in the session directory instead, until
/// `pcl result` writes them where the sync call would have (see
/// `Reply::Pulled`).
pub(super) async fn file(
    pool: &Arc<EnginePool>,
    targets: &str,
    remote: &str,
    dest: &Path,
    out: &mut ReplySink,
) -> Result<(), SessionError> {
    let ids = out.targets(pool, targets)?;
    let files = same_files(pool, &ids, remote)?;
    let keep_in = match out.job() {
        Some(job) if job.is_async => Some(out.jobs().files_dir(job)),
        _ => None,
    };
    let progress = Arc::new(AtomicU64::new(0));
    let mut places = Vec::new();
    let mut fetches = Vec::new();
    for file in &files {
        let id = file.first();
        let path = {
            let mut name = dest.join(check_remote(&file.path)?).into_os_string();
            name.push(format!(".{id}"));
            PathBuf::from(name)
        };
        let target = match &keep_in {
            Some(dir) => dir.join(id.to_string()),
            None => path.clone(),
        };
        places.push((path, target.clone()));
        let (pool, progress, abort) = (pool.clone(), progress.clone(), Abort::of(out));
        let remote = file.path.clone();
        fetches
            .push(async move { fetch_file(&pool, id, &remote, &target, &progress, abort).await });
    }
    let outcomes = with_progress(
        out,
        || progress.load(Ordering::Relaxed),
        || None,
        None,
        join_all(fetches),
    )
    .await;
    for ((file, outcome), (path, _)) in files.iter().zip(&outcomes).zip(&places) {
        if file.ids.len() > 1 && outcome.is_ok() {
            let remark = format!(
                "{}: {} is one file there, fetched once, as {}",
                sharers(pool, &file.ids),
                file.path,
                path.display()
            );
            out.send(&Reply::Remark(remark)).await?;
        }
    }
    for id in ids {
        let ((file, outcome), (path, target)) = files
            .iter()
            .zip(&outcomes)
            .zip(&places)
            .find(|((file, _), _)| file.ids.contains(&id))
            .expect("every target has its file");
        let from = file.first();
        let kept = (keep_in.is_some() && outcome.is_ok() && id == from).then(|| target.clone());
        let path = path.clone();
        out.send(&Reply::Pulled {
            id,
            path,
            kept,
            from,
        })
        .await?;
        report(out, pool, id, outcome).await?;
    }
    out.send(&Reply::Done).await
}

/// One engine's file into `target`, through a temporary file in the same
/// directory renamed into place once the digest matched.
async fn fetch_file(
    pool: &EnginePool,
    id: u32,
    remote: &str,
    target: &Path,
    progress: &AtomicU64,
    mut abort: Abort,
) -> Outcome {
    let local_err =
        |e: std::io::Error| Failure::Engine(format!("cannot write {}: {e}", target.display()));
    let (whole, mut file) = WholeFile::create(target).map_err(local_err)?;
    let op = EngineData::ReadFile {
        id,
        path: remote.to_string(),
    };
    let (job, request) = (format!("pull --file {remote}"), EngineRequest::Data(op));
    let call = pool.call(id, &job, &request);
    let mut call = abort
        .or(ABORTED, async { call.await.map_err(Failure::from) })
        .await?;
    // Writes happen on a blocking thread; the queue bounds what waits.
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(4);
    let writer = tokio::task::spawn_blocking(move || -> std::io::Result<std::fs::File> {
        while let Some(data) = rx.blocking_recv() {
            file.write_all(&data)?;
        }
        Ok(file)
    });
    let received = abort.or(ABORTED, async {
        let mut download = Download::new();
        while let Some(data) = download.next(&mut call).await? {
            progress.fetch_add(data.len() as u64, Ordering::Relaxed);
            if tx.send(data).await.is_err() {
                return Err(Failure::Engine(format!(
                    "cannot write {}",
                    target.display()
                )));
            }
        }
        Ok(())
    });
    let received = received.await;
    drop(tx);
    let written = writer
        .await
        .map_err(|e| Failure::Engine(format!("internal error: {e}")))?;
    // A local write error is the real cause of a download cut short.
    written.map_err(local_err)?;
    received?;
    whole.commit().map_err(local_err)
}
