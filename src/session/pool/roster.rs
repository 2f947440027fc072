//! Who is where and in what state: the engines' ids and hosts, target
//! resolution, and each engine's state as a user sees it.

use tokio::sync::watch;

use super::link::Link;
use super::{EngineCondition, EnginePool};
use crate::config::LauncherKind;
use crate::protocol::relay::RelayPeer;
use crate::protocol::session::{LaunchProgress, Route};
use crate::session::{SessionError, Targets};

impl EnginePool {
    pub(crate) fn progress(&self) -> watch::Receiver<LaunchProgress> {
        self.progress.subscribe()
    }

    /// The Slurm job whose nodes the session's engines run on, if any.
    pub(crate) fn slurm_job(&self) -> Option<String> {
        self.hosts
            .iter()
            .find_map(|host| host.spec.slurm_job.clone())
    }

    /// Hosts whose last launch failed, with the reason.
    pub(crate) fn failures(&self) -> Vec<(String, String)> {
        self.hosts
            .iter()
            .filter_map(|h| {
                let failure = h.failure.lock().expect("lock").clone()?;
                Some((h.spec.host.clone(), failure))
            })
            .collect()
    }

    /// Hosts that came up with something to say of it: the route `auto`
    /// chose when it was not UDP, and why.
    pub(crate) fn notes(&self) -> Vec<(String, String)> {
        self.hosts
            .iter()
            .filter(|h| matches!(h.link().link(), Link::Up(_)))
            .filter_map(|h| {
                let (_, note) = h.route.lock().expect("lock").clone()?;
                Some((h.spec.host.clone(), note?))
            })
            .collect()
    }

    /// How the engine's host is reached while it is connected.
    pub(crate) fn route(&self, id: u32) -> Option<Route> {
        let host = &self.hosts[self.engines[id as usize].host_index];
        match host.link().link() {
            Link::Up(_) => host.route.lock().expect("lock").as_ref().map(|r| r.0),
            _ => None,
        }
    }

    /// Every engine as (id, host), in id order.
    pub(crate) fn roster(&self) -> Vec<(u32, String)> {
        self.engines
            .iter()
            .map(|e| (e.id, self.hosts[e.host_index].spec.host.clone()))
            .collect()
    }

    /// The engine ids a `--targets` value names, in id order.
    pub(crate) fn resolve(&self, targets: &str) -> Result<Vec<u32>, SessionError> {
        targets
            .parse::<Targets>()?
            .resolve(&self.roster())
            .map_err(|why| SessionError::BadTargets(targets.to_string(), why))
    }

    /// `ids` (in id order) cut into runs of one host's engines, as
    /// positions in `ids`.
    pub(crate) fn by_host(&self, ids: &[u32]) -> Vec<Vec<usize>> {
        let mut runs: Vec<Vec<usize>> = Vec::new();
        let mut last_host = None;
        for (position, &id) in ids.iter().enumerate() {
            let host = self.engines[id as usize].host_index;
            match runs.last_mut() {
                Some(run) if last_host == Some(host) => run.push(position),
                _ => runs.push(vec![position]),
            }
            last_host = Some(host);
        }
        runs
    }

    pub(crate) fn host_of(&self, id: u32) -> String {
        self.hosts[self.engines[id as usize].host_index]
            .spec
            .host
            .clone()
    }

    /// How engine `id`'s host can be reached by its peers for a relayed
    /// push: `None` when its `relay` key says no or it is not up.
    pub(crate) fn relay_peer(&self, id: u32) -> Option<RelayPeer> {
        let host = &self.hosts[self.engines[id as usize].host_index];
        if !host.spec.relay || host.link().connection().is_none() {
            return None;
        }
        host.peer.lock().expect("lock").clone()
    }

    /// Silence on engine `id`'s link after which its calls fail.
    pub(crate) fn link_timeout(&self, id: u32) -> std::time::Duration {
        let host = &self.hosts[self.engines[id as usize].host_index];
        std::time::Duration::from_secs(host.spec.link_timeout.into())
    }

    /// Whether the engine runs on this machine, started without ssh.
    pub(crate) fn is_local(&self, id: u32) -> bool {
        self.hosts[self.engines[id as usize].host_index]
            .spec
            .launcher
            == LauncherKind::Local
    }

    /// The engine's state as a user sees it: a host that is not connected
    /// makes all its engines dead (saying whether it is coming back).
    pub(crate) fn state(&self, id: u32) -> EngineCondition {
        let slot = &self.engines[id as usize];
        match self.hosts[slot.host_index].link().link() {
            Link::Launching => EngineCondition::Starting,
            Link::Up(_) => slot.state.lock().expect("lock").clone(),
            Link::Reconnecting(reason) => EngineCondition::Dead(format!("{reason}; reconnecting")),
            Link::Down(reason) => EngineCondition::Dead(reason.clone()),
        }
    }
}
