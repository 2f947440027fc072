//! A parsed cluster file.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::error::{ConfigError, line_col};
use super::host_spec::{HostSpec, LauncherKind, Transport};
use super::schema::{ClusterFile, HostKeys, SlurmTable};
use super::slurm::{SlurmNodes, SlurmRequest};

/// The hosts a session starts engines on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Cluster {
    /// The file's `name`, used as the session name unless overridden.
    pub name: Option<String>,
    /// One entry per host, never empty. `[[hosts]]` tables keep the file's
    /// order; within one `host` value names are sorted with repeats merged,
    /// as ClusterShell's `nodeset -e` does (`n[1-3,7],login1` gives login1,
    /// n1, n2, n3, n7). A host appears once: names are compared ignoring
    /// ASCII case, as DNS does.
    pub hosts: Vec<HostSpec>,
    /// Nodes of a Slurm allocation still to be put into `hosts` (see
    /// `place_allocation`); `hosts` may be empty while this is set.
    pub slurm: Option<SlurmNodes>,
}

impl Cluster {
    /// Reads and parses the cluster file at `path`, naming it in errors as
    /// given.
    pub(crate) fn load(path: &Path) -> Result<Cluster, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_owned(),
            error,
        })?;
        Cluster::parse(&text, &path.display().to_string())
    }

    /// Parses cluster file `text`; `origin` names it in error messages.
    pub(crate) fn parse(text: &str, origin: &str) -> Result<Cluster, ConfigError> {
        let at = |offset: usize, message: String| ConfigError::at(origin, text, offset, message);
        let file: ClusterFile =
            toml::from_str(text).map_err(|error| ConfigError::from_toml(origin, text, &error))?;

        if let Some(host) = &file.defaults.host {
            return Err(at(
                host.span().start,
                "host belongs in a [[hosts]] table, not in [defaults]; move it there".into(),
            ));
        }
        let no_hosts = "no hosts: add at least one [[hosts]] table with host = \"name\"".to_owned();
        let slurm_table = file.slurm.map(|table| table.into_inner());
        let tables = match file.hosts {
            None if slurm_table.is_some() => Vec::new(),
            None => return Err(at(0, no_hosts)),
            Some(tables) if tables.get_ref().0.is_empty() && slurm_table.is_none() => {
                return Err(at(tables.span().start, no_hosts));
            }
            Some(tables) => tables.into_inner().0,
        };

        let mut hosts = Vec::new();
        // Lowercased host name -> offset of the `host` value that first gave it.
        let mut first_seen: HashMap<String, usize> = HashMap::new();
        // The `launcher = "slurm"` table, and where it starts.
        let mut slurm: Option<(usize, SlurmNodes)> = None;
        let table_engines = slurm_table.as_ref().and_then(|t| t.engines).map(|e| e.0);
        for table in tables {
            let table_start = table.span().start;
            let own_engines = table.get_ref().engines.map(|engines| engines.0);
            let keys = table.into_inner().or(&file.defaults);
            let launcher = keys.launcher.unwrap_or_default();
            if keys.transport == Some(Transport::Ssh) && launcher != LauncherKind::Ssh {
                return Err(at(
                    table_start,
                    format!(
                        "transport = \"ssh\" needs launcher = \"ssh\": a {} host has no ssh \
                         channel to carry the session; leave transport out (or write \"quic\")",
                        launcher.name()
                    ),
                ));
            }
            if keys.launcher == Some(LauncherKind::Slurm) {
                if let Some((first, _)) = &slurm {
                    let (line, column) = line_col(text, *first);
                    return Err(at(
                        table_start,
                        format!(
                            "a second [[hosts]] table with launcher = \"slurm\" (the first is \
                             at line {line}, column {column}); one table stands for all the \
                             nodes of the allocation: give it host = \"...\" to pick some"
                        ),
                    ));
                }
                let only = keys.host.as_ref().map(|host| host.get_ref().0.clone());
                for name in only.iter().flatten() {
                    first_seen.insert(name.to_ascii_lowercase(), table_start);
                }
                let engines = own_engines.or(table_engines).or(keys.engines.map(|e| e.0));
                let nodes = SlurmNodes {
                    at: hosts.len(),
                    keys: host_spec(String::new(), &keys),
                    engines,
                    only,
                    request: None,
                };
                slurm = Some((table_start, nodes));
                continue;
            }
            let Some(host) = &keys.host else {
                return Err(at(
                    table_start,
                    "this [[hosts]] table has no host; add host = \"name\" or a range \
                     like host = \"node[01-16]\""
                        .into(),
                ));
            };
            let offset = host.span().start;
            for name in &host.get_ref().0 {
                match first_seen.entry(name.to_ascii_lowercase()) {
                    Entry::Vacant(slot) => {
                        slot.insert(offset);
                    }
                    Entry::Occupied(first) => {
                        let (line, column) = line_col(text, *first.get());
                        return Err(at(
                            offset,
                            format!(
                                "host {name:?} is listed twice (first at line {line}, column \
                                 {column}); list each host once and set engines = N there \
                                 for more engines"
                            ),
                        ));
                    }
                }
                hosts.push(host_spec(name.clone(), &keys));
            }
        }
        let mut slurm = slurm.map(|(_, nodes)| nodes);
        if let Some(table) = slurm_table {
            let nodes = slurm.get_or_insert_with(|| {
                let keys = HostKeys {
                    launcher: Some(LauncherKind::Slurm),
                    ..HostKeys::default()
                }
                .or(&file.defaults);
                SlurmNodes {
                    at: 0,
                    keys: host_spec(String::new(), &keys),
                    engines: table_engines.or(file.defaults.engines.map(|e| e.0)),
                    only: None,
                    request: None,
                }
            });
            nodes.request = Some(slurm_request(table));
        }
        Ok(Cluster {
            name: file.name.map(|name| name.0),
            hosts,
            slurm,
        })
    }

    /// The embedded default cluster, used when `pcl up` is given no file:
    /// `engines` local engines on "localhost". `engines` must be at least 1.
    pub(crate) fn local_default(engines: u32) -> Cluster {
        debug_assert!(engines >= 1, "a host needs at least one engine");
        Cluster {
            name: None,
            hosts: vec![HostSpec {
                launcher: LauncherKind::Local,
                engines,
                ..HostSpec::new("localhost")
            }],
            slurm: None,
        }
    }

    /// Sets every host's engine count, for `pcl up -n N`. `engines` must be
    /// at least 1.
    pub(crate) fn with_engines(mut self, engines: u32) -> Cluster {
        debug_assert!(engines >= 1, "a host needs at least one engine");
        for host in &mut self.hosts {
            host.engines = engines;
        }
        if let Some(slurm) = &mut self.slurm {
            slurm.engines = Some(engines);
        }
        self
    }

    /// Engines across all hosts, for the tests' checks of a parse.
    /// Saturates rather than wrapping: a bogus file must not panic.
    #[cfg(test)]
    pub(crate) fn engine_count(&self) -> u32 {
        self.hosts
            .iter()
            .fold(0, |total, host| total.saturating_add(host.engines))
    }
}

/// The `[slurm]` table as a request; its `engines` also size the
/// allocation when `tasks_per_node` is left out.
fn slurm_request(table: SlurmTable) -> SlurmRequest {
    SlurmRequest {
        nodes: table.nodes.map(|n| n.0),
        tasks_per_node: table.tasks_per_node.or(table.engines).map(|n| n.0),
        time: table.time.map(|t| t.0),
        partition: table.partition.map(|w| w.0),
        account: table.account.map(|w| w.0),
        qos: table.qos.map(|w| w.0),
        options: table.options.unwrap_or_default(),
    }
}

/// The spec for host `name` from its table's keys, `[defaults]` already
/// applied; what neither gives takes `HostSpec::new`'s default.
fn host_spec(name: String, keys: &HostKeys) -> HostSpec {
    let default = HostSpec::new(name);
    HostSpec {
        launcher: keys.launcher.unwrap_or(default.launcher),
        transport: keys.transport.unwrap_or(default.transport),
        engines: keys.engines.map_or(default.engines, |engines| engines.0),
        user: keys.user.clone(),
        port: keys.port.map(|port| port.0),
        identity: keys.identity.clone(),
        ssh_options: keys.ssh_options.clone().unwrap_or_default(),
        workdir: keys.workdir.clone(),
        engine_path: keys.engine_path.clone(),
        shell: keys.shell.clone().unwrap_or(default.shell),
        setup: keys.setup.clone(),
        link_timeout: keys.link_timeout.map_or(default.link_timeout, |s| s.0),
        reconnect_grace: keys
            .reconnect_grace
            .map_or(default.reconnect_grace, |s| s.0),
        relay: keys.relay.unwrap_or(default.relay),
        ..default
    }
}
