//! Which file a `--file` REMOTE names on each target engine: `{id}` and
//! `{host}` expanded, and engines whose expansion is one path in one
//! shared workdir put together, since for them it is one file.

use std::collections::HashMap;
use std::path::PathBuf;

use crate::config::NodeSet;
use crate::protocol::data::check_remote;
use crate::protocol::remote::RemoteTemplate;
use crate::session::{EngineCondition, EnginePool, SessionError, fold_ids};

/// One file and the target engines whose REMOTE it is.
pub(super) struct SameFile {
    /// REMOTE as expanded for these engines.
    pub(super) path: String,
    /// In id order; the first one sends or receives it for all.
    pub(super) ids: Vec<u32>,
}

impl SameFile {
    pub(super) fn first(&self) -> u32 {
        self.ids[0]
    }
}

/// The files `remote` names on engines `ids`, in the order of their first
/// engine.
pub(super) fn same_files(
    pool: &EnginePool,
    ids: &[u32],
    remote: &str,
) -> Result<Vec<SameFile>, SessionError> {
    let template = RemoteTemplate::parse(remote)?;
    let mut files: Vec<SameFile> = Vec::new();
    // `a/./b` and `a/b` are one file.
    let mut index: HashMap<(usize, PathBuf), usize> = HashMap::new();
    for &id in ids {
        let path = template.expand(id, &pool.host_of(id))?;
        let key = (pool.workdir(id).group, check_remote(&path)?);
        // A dead engine neither writes nor reads for others: it fails on
        // its own, and a live one of its group does the work.
        let dead = matches!(pool.state(id), EngineCondition::Dead(_));
        match index.get(&key).filter(|_| !dead) {
            Some(&i) => files[i].ids.push(id),
            None => {
                if !dead {
                    index.insert(key, files.len());
                }
                files.push(SameFile {
                    path,
                    ids: vec![id],
                });
            }
        }
    }
    Ok(files)
}

/// Refuse, before any byte moves, a call for which two target engines
/// would use one file; `harm(path, engines)` says what would go wrong.
pub(super) fn refuse_shared(
    pool: &EnginePool,
    files: &[SameFile],
    remote: &str,
    harm: impl Fn(&str, usize) -> String,
) -> Result<(), SessionError> {
    let Some(file) = files.iter().find(|f| f.ids.len() > 1) else {
        return Ok(());
    };
    let per_engine = format!("{remote}.{{id}}").replace('\'', "'\\''");
    Err(SessionError::Refused(format!(
        "{}: {}; give each its own file, e.g. --file '{per_engine}'",
        sharers(pool, &file.ids),
        harm(&file.path, file.ids.len()),
    )))
}

/// `engines 0-3 share the workdir DIR (hosts node[01-02] share a file
/// system)`: who shares which directory, and why they do.
pub(super) fn sharers(pool: &EnginePool, ids: &[u32]) -> String {
    let first = ids[0];
    let mut hosts: Vec<String> = Vec::new();
    for &id in ids {
        let host = pool.host_of(id);
        if !hosts.contains(&host) {
            hosts.push(host);
        }
    }
    let dir = match pool.workdir(first).path {
        Some(path) => format!("the workdir {path}"),
        None => format!("the workdir of host {}", pool.host_of(first)),
    };
    let why = match hosts.as_slice() {
        [host] => format!("all on host {host}"),
        _ => format!("hosts {} share a file system", fold_hosts(&hosts)),
    };
    format!("engines {} share {dir} ({why})", fold_ids(ids))
}

/// Host names folded into ranges as `nodeset -f` does: `node[01-04]`.
fn fold_hosts(hosts: &[String]) -> String {
    let listed = hosts.join(",");
    match NodeSet::parse(&listed) {
        Ok(mut set) => set.fold(),
        Err(_) => listed,
    }
}

#[cfg(test)]
mod tests {
    use super::fold_hosts;

    #[test]
    fn hosts_fold_into_ranges() {
        let hosts = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        assert_eq!(fold_hosts(&hosts(&["node01", "node02"])), "node[01-02]");
        assert_eq!(
            fold_hosts(&hosts(&["node01", "node02", "login"])),
            "login,node[01-02]"
        );
        assert_eq!(fold_hosts(&hosts(&["10.0.0.2"])), "10.0.0.2");
    }
}
