//! Which engines share a workdir. Engines of one host always do; hosts do
//! when their workdirs are one directory on a shared file system (an NFS
//! home). The probe (see `WorkdirProbe`) runs once the hosts are up, and
//! again after a restart; data verbs then send one copy per directory and
//! refuse what would overwrite one file from two engines.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::EnginePool;
use crate::join_all;
use crate::protocol::engine::{EngineReply, EngineRequest, WorkdirProbe};
use crate::transport::{read_frame, write_frame};

/// How long one step of the probe may take on one host; a host that does
/// not answer in time is taken to share with no other host.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// What the last probe found about one host.
#[derive(Debug, Clone)]
struct HostWorkdir {
    /// The workdir as that host's engine host names it, if it said.
    path: Option<String>,
    /// The first (lowest-indexed) host of those sharing the workdir.
    group: usize,
}

#[derive(Default)]
pub(super) struct Workdirs {
    /// Per host; `None` for a host that was not up at the last probe.
    hosts: Mutex<Vec<Option<HostWorkdir>>>,
    /// One probe at a time: each one's markers are its own.
    probing: tokio::sync::Mutex<()>,
}

/// Where an engine's files go, as far as sharing goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Workdir {
    /// Engines with the same `group` share one workdir.
    pub(crate) group: usize,
    /// The directory, as the engine's host names it, when known.
    pub(crate) path: Option<String>,
}

impl EnginePool {
    /// Find out which of the hosts up now share a workdir.
    pub(super) async fn probe_workdirs(self: &Arc<Self>) {
        let _one_at_a_time = self.workdirs.probing.lock().await;
        let up: Vec<usize> = (0..self.hosts.len())
            .filter(|&i| self.hosts[i].link().connection().is_some())
            .collect();
        let marks = self.ask_each(&up, WorkdirProbe::Mark).await;
        let marked: Vec<(usize, String, String)> = up
            .iter()
            .zip(marks)
            .filter_map(|(&i, reply)| match reply {
                Ok(EngineReply::Marked { token, workdir }) => Some((i, token, workdir)),
                other => {
                    self.probe_failed(i, "make a marker", other);
                    None
                }
            })
            .collect();
        let tokens: Vec<String> = marked.iter().map(|(_, t, _)| t.clone()).collect();
        let asked: Vec<usize> = marked.iter().map(|(i, _, _)| *i).collect();
        let looks = self
            .ask_each(&asked, WorkdirProbe::Look(tokens.clone()))
            .await;
        // Every host asked to mark unmarks, whatever it answered.
        for (i, reply) in up
            .iter()
            .zip(self.ask_each(&up, WorkdirProbe::Unmark).await)
        {
            if !matches!(reply, Ok(EngineReply::Unmarked)) {
                self.probe_failed(*i, "remove its marker", reply);
            }
        }
        let seen: Vec<Vec<bool>> = asked
            .iter()
            .zip(looks)
            .map(|(&i, reply)| match reply {
                Ok(EngineReply::Seen(seen)) if seen.len() == tokens.len() => seen,
                other => {
                    self.probe_failed(i, "look for markers", other);
                    vec![false; tokens.len()]
                }
            })
            .collect();
        let groups = groups(&seen);
        let mut found: Vec<Option<HostWorkdir>> = vec![None; self.hosts.len()];
        for &i in &up {
            found[i] = Some(HostWorkdir {
                path: None,
                group: i,
            });
        }
        for ((i, _, path), group) in marked.into_iter().zip(groups) {
            found[i] = Some(HostWorkdir {
                path: Some(path),
                group: asked[group],
            });
        }
        *self.workdirs.hosts.lock().expect("lock") = found;
    }

    /// Send each of `hosts` this step of the probe, all at once.
    async fn ask_each(
        self: &Arc<Self>,
        hosts: &[usize],
        step: WorkdirProbe,
    ) -> Vec<Result<EngineReply, String>> {
        join_all(hosts.iter().map(|&i| {
            let (pool, request) = (self.clone(), EngineRequest::Workdir(step.clone()));
            async move {
                tokio::time::timeout(STEP_TIMEOUT, pool.host_request(i, &request))
                    .await
                    .unwrap_or_else(|_| Err("no answer in time".into()))
            }
        }))
        .await
    }

    /// One request to the engine host of host `index`, one reply.
    async fn host_request(
        &self,
        index: usize,
        request: &EngineRequest,
    ) -> Result<EngineReply, String> {
        let connection = self.hosts[index]
            .link()
            .connection()
            .ok_or("not connected")?;
        let (mut send, mut recv) = connection.open_bi().await.map_err(|e| e.to_string())?;
        write_frame(&mut send, request)
            .await
            .map_err(|e| e.to_string())?;
        let _ = send.finish();
        match read_frame::<_, EngineReply>(&mut recv).await {
            Ok(Some(reply)) => Ok(reply),
            Ok(None) => Err("no answer".into()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Said in the session log: the host is then taken to share its
    /// workdir with no other host.
    fn probe_failed(&self, index: usize, what: &str, reply: Result<EngineReply, String>) {
        let why = match reply {
            Ok(EngineReply::Error(e)) | Err(e) => e,
            Ok(other) => format!("unexpected reply {other:?}"),
        };
        eprintln!(
            "host {}: could not {what} for the shared-workdir probe: {why}",
            self.hosts[index].spec.host
        );
    }

    /// Engine `id`'s workdir; without a probe of its host, one of its own.
    pub(crate) fn workdir(&self, id: u32) -> Workdir {
        let host = self.engines[id as usize].host_index;
        match self.workdirs.hosts.lock().expect("lock").get(host) {
            Some(Some(found)) => Workdir {
                group: found.group,
                path: found.path.clone(),
            },
            _ => Workdir {
                group: host,
                path: None,
            },
        }
    }

    /// Every engine sharing engine `id`'s workdir (itself included), or
    /// `None` while its host has not been probed.
    pub(crate) fn sharing(&self, id: u32) -> Option<Vec<u32>> {
        let hosts = self.workdirs.hosts.lock().expect("lock");
        let group = hosts
            .get(self.engines[id as usize].host_index)?
            .as_ref()?
            .group;
        Some(
            self.engines
                .iter()
                .filter(|e| matches!(hosts.get(e.host_index), Some(Some(h)) if h.group == group))
                .map(|e| e.id)
                .collect(),
        )
    }
}

/// Hosts grouped by shared workdir, from what each saw: `seen[i][j]` is
/// whether host i saw host j's marker. Either direction is enough (a
/// host that could not look still shares with those that saw it).
/// Returns, per host, the index of the first host of its group.
fn groups(seen: &[Vec<bool>]) -> Vec<usize> {
    let n = seen.len();
    let mut group: Vec<usize> = (0..n).collect();
    fn root(group: &mut [usize], mut i: usize) -> usize {
        while group[i] != i {
            group[i] = group[group[i]];
            i = group[i];
        }
        i
    }
    for (i, row) in seen.iter().enumerate() {
        for (j, &saw) in row.iter().enumerate().take(n) {
            if saw && i != j {
                let (a, b) = (root(&mut group, i), root(&mut group, j));
                group[a.max(b)] = a.min(b);
            }
        }
    }
    (0..n).map(|i| root(&mut group, i)).collect()
}

#[cfg(test)]
mod tests {
    use super::groups;

    #[test]
    fn hosts_that_see_each_other_share() {
        let t = true;
        let f = false;
        // Two pairs: 0 and 2 share, 1 and 3 share.
        let seen = vec![
            vec![t, f, t, f],
            vec![f, t, f, t],
            vec![t, f, t, f],
            vec![f, t, f, t],
        ];
        assert_eq!(groups(&seen), vec![0, 1, 0, 1]);
        // Separate workdirs.
        assert_eq!(groups(&[vec![t, f], vec![f, t]]), vec![0, 1]);
        // One host that could not look (all false) still joins the one
        // that saw its marker; sharing is transitive.
        let seen = vec![vec![f, f, f], vec![t, t, f], vec![f, t, t]];
        assert_eq!(groups(&seen), vec![0, 0, 0]);
        assert!(groups(&[]).is_empty());
    }
}
