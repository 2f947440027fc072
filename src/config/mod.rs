//! The cluster file: which hosts to start engines on, and how.
//!
//! `Cluster::load` reads a TOML file (see `cluster.example.toml`) into one
//! `HostSpec` per host, with host ranges expanded and `[defaults]` applied,
//! so launchers never see the file's structure. Every error names the file,
//! line and column it applies to.

mod cluster;
mod error;
mod host_spec;
mod keys;
mod nodeset;
mod schema;
mod slurm;
mod values;

pub(crate) use cluster::Cluster;
pub(crate) use host_spec::{HostSpec, LauncherKind, Transport};
pub(crate) use keys::{Place, keys};
pub(crate) use nodeset::NodeSet;
#[cfg(test)]
use slurm::AllocatedNode;
pub(crate) use slurm::{Allocation, AllocationError, SlurmRequest};
pub(crate) use values::MAX_ENGINES_PER_HOST;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_errors;
#[cfg(test)]
mod tests_slurm;
