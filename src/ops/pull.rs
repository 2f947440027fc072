//! `pcl pull`: variables' values, or a remote file fetched from every
//! target as `DEST/REMOTE.<ID>`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;

use super::transfer::{Download, Failure, Outcome, report, with_progress};
use crate::join_all;
use crate::protocol::data::{CHUNK, EngineData, check_name, check_remote};
use crate::protocol::engine::EngineRequest;
use crate::protocol::session::Reply;
use crate::session::{EnginePool, ReplySink, SessionError};

/// One variable of one engine: its bytes or why there are none.
pub type Fetched = (String, Result<Vec<u8>, Failure>);

/// The value of variable `name` (`array`: NUL-ended elements) on `id`.
pub async fn fetch_var(
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
        .map_err(Failure::Lost)?;
    let (mut value, mut download) = (Vec::new(), Download::new());
    while let Some(data) = download.next(&mut call).await? {
        value.extend(data);
    }
    Ok(value)
}

pub async fn vars(
    pool: &Arc<EnginePool>,
    targets: &str,
    names: Vec<String>,
    single: bool,
    out: &mut ReplySink,
) -> Result<(), SessionError> {
    for name in &names {
        check_name(name)?;
    }
    let ids = pool.resolve(targets)?;
    if single && ids.len() != 1 {
        return Err(SessionError::Refused(format!(
            "--raw needs exactly one target engine; `{targets}` names {}",
            ids.len()
        )));
    }
    let names = Arc::new(names);
    let fetched = join_all(ids.iter().map(|&id| {
        let (pool, names) = (pool.clone(), names.clone());
        async move {
            let mut values: Vec<Fetched> = Vec::new();
            for name in names.iter() {
                values.push((name.clone(), fetch_var(&pool, id, name, false).await));
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
        };
        report(out, pool, id, &outcome).await?;
    }
    out.send(&Reply::Done).await
}

pub async fn file(
    pool: &Arc<EnginePool>,
    targets: &str,
    remote: &str,
    dest: &Path,
    out: &mut ReplySink,
) -> Result<(), SessionError> {
    let relative = check_remote(remote)?;
    let ids = pool.resolve(targets)?;
    let progress = Arc::new(AtomicU64::new(0));
    let fetches = ids.iter().map(|&id| {
        let (pool, progress) = (pool.clone(), progress.clone());
        let target = {
            let mut name = dest.join(&relative).into_os_string();
            name.push(format!(".{id}"));
            PathBuf::from(name)
        };
        let remote = remote.to_string();
        async move { fetch_file(&pool, id, &remote, &target, &progress).await }
    });
    let outcomes = with_progress(out, &progress, None, join_all(fetches)).await;
    for (id, outcome) in ids.into_iter().zip(outcomes) {
        report(out, pool, id, &outcome).await?;
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
) -> Outcome {
    let local_err =
        |e: std::io::Error| Failure::Engine(format!("cannot write {}: {e}", target.display()));
    let dir = target.parent().expect("a file under DEST");
    std::fs::create_dir_all(dir).map_err(local_err)?;
    let temp = Temp(dir.join(format!(
        ".{}.pcl-{}.tmp",
        target.file_name().expect("a file name").to_string_lossy(),
        std::process::id()
    )));
    let mut file = std::fs::File::create(&temp.0).map_err(local_err)?;
    let op = EngineData::ReadFile {
        id,
        path: remote.to_string(),
    };
    let mut call = pool
        .call(
            id,
            &format!("pull --file {remote}"),
            &EngineRequest::Data(op),
        )
        .await
        .map_err(Failure::Lost)?;
    // Writes happen on a blocking thread; the queue bounds what waits.
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(4);
    let writer = tokio::task::spawn_blocking(move || -> std::io::Result<std::fs::File> {
        while let Some(data) = rx.blocking_recv() {
            file.write_all(&data)?;
        }
        Ok(file)
    });
    let received = async {
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
    }
    .await;
    drop(tx);
    let written = writer
        .await
        .map_err(|e| Failure::Engine(format!("internal error: {e}")))?;
    // A local write error is the real cause of a download cut short.
    written.map_err(local_err)?;
    received?;
    std::fs::rename(&temp.0, target).map_err(local_err)?;
    std::mem::forget(temp);
    Ok(())
}

/// Removed on drop: a failed fetch leaves nothing behind.
struct Temp(PathBuf);

impl Drop for Temp {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
