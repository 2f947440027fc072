//! The engine host's part in finding out which hosts share a workdir
//! (see `WorkdirProbe`): a marker file of a random name, made and looked
//! for in the workdir, then removed.

use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::Arc;

use thiserror::Error;

use super::EngineError;
use super::guard::Guard;
use super::host::Host;
use super::workdir::prepare_workdir;
use crate::protocol::engine::{EngineReply, MARKER_TOKEN_LEN, WorkdirProbe, marker_name};

#[derive(Debug, Error)]
enum ProbeError {
    #[error(transparent)]
    Workdir(#[from] EngineError),
    #[error("cannot make a marker file in {dir}: {source}")]
    Create { dir: String, source: std::io::Error },
    #[error("`{0}` is not a marker token")]
    BadToken(String),
}

/// A marker file in the workdir, removed on drop. The guard knows of it
/// while it exists, so even a SIGKILLed engine host leaves none behind.
pub(super) struct Marker {
    path: PathBuf,
    guard: Option<Arc<Guard>>,
}

impl Drop for Marker {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        if let Some(guard) = &self.guard {
            guard.done(&self.path);
        }
    }
}

/// One step of the probe. It may block (the workdir may be on NFS), so
/// the engine host runs it off its runtime thread.
pub(super) fn serve(host: &Host, step: WorkdirProbe) -> EngineReply {
    let reply = match step {
        WorkdirProbe::Mark => mark(host),
        WorkdirProbe::Look(tokens) => look(host, &tokens),
        WorkdirProbe::Unmark => {
            host.marker.lock().expect("marker lock").take();
            Ok(EngineReply::Unmarked)
        }
    };
    reply.unwrap_or_else(|e| EngineReply::Error(e.to_string()))
}

fn mark(host: &Host) -> Result<EngineReply, ProbeError> {
    let mut held = host.marker.lock().expect("marker lock");
    held.take();
    let workdir = prepare_workdir(host.config.workdir.as_deref())?;
    let token = random_token();
    let path = workdir.join(marker_name(&token));
    // Told before the file exists, so that no moment is unguarded.
    if let Some(guard) = &host.guard {
        guard.temp(&path);
    }
    // Made exclusively and never through a link: whatever already has
    // that name is not ours, and is left alone.
    let created = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path);
    if let Err(source) = created {
        if let Some(guard) = &host.guard {
            guard.done(&path);
        }
        return Err(ProbeError::Create {
            dir: workdir.display().to_string(),
            source,
        });
    }
    *held = Some(Marker {
        path,
        guard: host.guard.clone(),
    });
    Ok(EngineReply::Marked {
        token,
        workdir: workdir.display().to_string(),
    })
}

/// Each marker is looked up by its name, never by listing the directory:
/// an NFS client may serve a listing from its cache, but a name it never
/// looked up before is asked of the server.
fn look(host: &Host, tokens: &[String]) -> Result<EngineReply, ProbeError> {
    let workdir = prepare_workdir(host.config.workdir.as_deref())?;
    let mut seen = Vec::with_capacity(tokens.len());
    for token in tokens {
        if token.len() != MARKER_TOKEN_LEN || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ProbeError::BadToken(token.clone()));
        }
        // Only a regular file counts: a link could point anywhere.
        let found = std::fs::symlink_metadata(workdir.join(marker_name(token)));
        seen.push(found.is_ok_and(|meta| meta.is_file()));
    }
    Ok(EngineReply::Seen(seen))
}

fn random_token() -> String {
    use ring::rand::{SecureRandom, SystemRandom};
    let mut bytes = [0u8; MARKER_TOKEN_LEN / 2];
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("the system random source works");
    hex::encode(bytes)
}
