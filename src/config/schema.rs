//! The shape of a cluster file as serde reads it. Checks that involve more
//! than one value (a missing or misplaced `host`, duplicates, no hosts) are
//! made in `cluster.rs`, which still knows every `host`'s position.

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;
use serde::de::{Deserializer, SeqAccess, Visitor};
use toml::Spanned;

use super::host_spec::{LauncherKind, Transport};
use super::values::{
    EngineCount, HostNames, NodeCount, Port, Seconds, SessionName, SlurmTime, SlurmWord,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ClusterFile {
    pub(super) name: Option<SessionName>,
    #[serde(default)]
    pub(super) defaults: HostKeys,
    pub(super) hosts: Option<Spanned<HostTables>>,
    pub(super) slurm: Option<Spanned<SlurmTable>>,
}

/// `[slurm]`: what to ask Slurm for. Every key is optional; what is left
/// out is Slurm's own default (one node, the default partition, ...).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(super) struct SlurmTable {
    pub(super) nodes: Option<NodeCount>,
    pub(super) tasks_per_node: Option<EngineCount>,
    pub(super) engines: Option<EngineCount>,
    pub(super) time: Option<SlurmTime>,
    pub(super) partition: Option<SlurmWord>,
    pub(super) account: Option<SlurmWord>,
    pub(super) qos: Option<SlurmWord>,
    pub(super) options: Option<Vec<String>>,
}

/// The keys of a `[[hosts]]` table. `[defaults]` takes the same keys but
/// `host`; sharing one type lets `cluster.rs` say precisely what is wrong
/// with a misplaced or missing `host` instead of serde's generic message.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(super) struct HostKeys {
    pub(super) host: Option<Spanned<HostNames>>,
    pub(super) engines: Option<EngineCount>,
    pub(super) user: Option<String>,
    pub(super) port: Option<Port>,
    pub(super) identity: Option<PathBuf>,
    pub(super) ssh_options: Option<Vec<String>>,
    pub(super) launcher: Option<LauncherKind>,
    pub(super) transport: Option<Transport>,
    pub(super) workdir: Option<String>,
    pub(super) engine_path: Option<String>,
    pub(super) shell: Option<String>,
    pub(super) setup: Option<String>,
    pub(super) link_timeout: Option<Seconds>,
    pub(super) reconnect_grace: Option<Seconds>,
    pub(super) relay: Option<bool>,
}

impl HostKeys {
    /// These keys, with `defaults` filling in the ones left out. A key
    /// replaces its default whole: `ssh_options` lists are not joined.
    pub(super) fn or(self, defaults: &HostKeys) -> HostKeys {
        HostKeys {
            host: self.host,
            engines: self.engines.or(defaults.engines),
            user: self.user.or_else(|| defaults.user.clone()),
            port: self.port.or(defaults.port),
            identity: self.identity.or_else(|| defaults.identity.clone()),
            ssh_options: self.ssh_options.or_else(|| defaults.ssh_options.clone()),
            launcher: self.launcher.or(defaults.launcher),
            transport: self.transport.or(defaults.transport),
            workdir: self.workdir.or_else(|| defaults.workdir.clone()),
            engine_path: self.engine_path.or_else(|| defaults.engine_path.clone()),
            shell: self.shell.or_else(|| defaults.shell.clone()),
            setup: self.setup.or_else(|| defaults.setup.clone()),
            link_timeout: self.link_timeout.or(defaults.link_timeout),
            reconnect_grace: self.reconnect_grace.or(defaults.reconnect_grace),
            relay: self.relay.or(defaults.relay),
        }
    }
}

/// The `hosts` array. A type of its own so that `[hosts]`, a common slip
/// for `[[hosts]]`, is answered with what to write.
#[derive(Debug)]
pub(super) struct HostTables(pub(super) Vec<Spanned<HostKeys>>);

impl<'de> Deserialize<'de> for HostTables {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_seq(HostTablesVisitor)
    }
}

struct HostTablesVisitor;

impl<'de> Visitor<'de> for HostTablesVisitor {
    type Value = HostTables;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of tables: write [[hosts]], with double brackets")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<HostTables, A::Error> {
        let mut tables = Vec::new();
        while let Some(table) = seq.next_element()? {
            tables.push(table);
        }
        Ok(HostTables(tables))
    }
}
