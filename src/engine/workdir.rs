//! Where an engine host's shells start: the cluster file's workdir, made
//! if it is missing.

use std::path::PathBuf;

use super::EngineError;

/// Expand a leading `~` and create the directory; no workdir means home.
pub(super) fn prepare_workdir(workdir: Option<&str>) -> Result<PathBuf, EngineError> {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/".into());
    let path = match workdir {
        None => return Ok(home),
        Some("~") => home,
        Some(w) => match w.strip_prefix("~/") {
            Some(rest) => home.join(rest),
            None => PathBuf::from(w),
        },
    };
    std::fs::create_dir_all(&path).map_err(|source| EngineError::Workdir {
        path: path.display().to_string(),
        source,
    })?;
    Ok(path)
}
