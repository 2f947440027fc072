//! Slurm in a cluster: nodes that are known only once an allocation
//! exists. A `[[hosts]]` table with `launcher = "slurm"` (or `pcl up
//! --slurm`) stands for the nodes of an allocation; a `[slurm]` table says
//! what to ask Slurm for when pcl gets the allocation itself. Either way
//! the nodes are put into the cluster by `Cluster::place_allocation`,
//! from the job's own node list, before any engine starts.

use serde::{Deserialize, Serialize};

use super::cluster::Cluster;
use super::host_spec::HostSpec;
use super::values::{MAX_ENGINES_PER_HOST, expand};

/// What to ask Slurm for (the `[slurm]` table). `None` leaves a setting
/// to Slurm's own default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SlurmRequest {
    pub nodes: Option<u32>,
    /// `tasks_per_node`, or else the table's `engines`: Slurm sizes the
    /// allocation for that many engines on every node.
    pub tasks_per_node: Option<u32>,
    pub time: Option<String>,
    pub partition: Option<String>,
    pub account: Option<String>,
    pub qos: Option<String>,
    /// Extra allocation options, passed verbatim after pcl's own.
    pub options: Vec<String>,
}

/// Where the nodes of an allocation go in a cluster, and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SlurmNodes {
    /// Index in `Cluster::hosts` where the nodes are put, in the job's order.
    pub at: usize,
    /// The keys every node takes; `host` is empty until the node is known.
    pub keys: HostSpec,
    /// Engines per node as the file (or `-n`) gives them; `None`: as many
    /// as the tasks Slurm gave that node.
    pub engines: Option<u32>,
    /// Only these nodes of the allocation (the table's `host`); `None`: all.
    pub only: Option<Vec<String>>,
    /// `Some`: pcl asks Slurm for the allocation itself, and releases it
    /// at `pcl down`.
    pub request: Option<SlurmRequest>,
}

/// A Slurm job's allocation, as its environment describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Allocation {
    pub job: String,
    /// In the job's order (`SLURM_JOB_NODELIST`).
    pub nodes: Vec<AllocatedNode>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AllocatedNode {
    pub name: String,
    /// The tasks Slurm gave this node (`SLURM_TASKS_PER_NODE`).
    pub tasks: u32,
}

/// Why an allocation could not be read or used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AllocationError {
    #[error("SLURM_JOB_ID {0:?} is not a Slurm job id")]
    JobId(String),
    #[error("SLURM_JOB_NODELIST {list:?}: {why}")]
    NodeList { list: String, why: String },
    #[error(
        "SLURM_TASKS_PER_NODE {text:?} does not describe {nodes} nodes (Slurm writes \
         \"2(x3),1\")"
    )]
    Tasks { text: String, nodes: usize },
    #[error(
        "host {host:?} is not a node of Slurm job {job} (its nodes: {nodes}); name nodes of \
         the allocation, or leave host out for all of them"
    )]
    NotAllocated {
        host: String,
        job: String,
        nodes: String,
    },
    #[error(
        "host {0:?} is a node of the Slurm allocation and also a [[hosts]] entry of its own; \
         list it once"
    )]
    Duplicate(String),
}

impl Allocation {
    /// The allocation of job `job` from Slurm's variables. Nodes keep the
    /// order of `nodelist` (the tasks per node follow that order); each
    /// range in it expands as in a cluster file. Without `tasks_per_node`
    /// every node counts one task.
    pub(crate) fn parse(
        job: &str,
        nodelist: &str,
        tasks_per_node: Option<&str>,
    ) -> Result<Allocation, AllocationError> {
        if job.is_empty() || !job.bytes().all(|b| b.is_ascii_digit()) {
            return Err(AllocationError::JobId(job.to_owned()));
        }
        let list_error = |why: String| AllocationError::NodeList {
            list: nodelist.to_owned(),
            why,
        };
        let mut names = Vec::new();
        for part in top_level_parts(nodelist) {
            names.extend(expand(part).map_err(list_error)?);
        }
        if names.is_empty() {
            return Err(list_error("no nodes".into()));
        }
        let tasks = match tasks_per_node {
            Some(text) => parse_tasks(text, names.len()).ok_or_else(|| AllocationError::Tasks {
                text: text.to_owned(),
                nodes: names.len(),
            })?,
            None => vec![1; names.len()],
        };
        Ok(Allocation {
            job: job.to_owned(),
            nodes: names
                .into_iter()
                .zip(tasks)
                .map(|(name, tasks)| AllocatedNode { name, tasks })
                .collect(),
        })
    }
}

/// `a[1-3],b,c[1,4]` -> `a[1-3]`, `b`, `c[1,4]`: Slurm's own order is the
/// order of these parts, while one range expands sorted anyway.
fn top_level_parts(list: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in list.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&list[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&list[start..]);
    parts.into_iter().filter(|p| !p.is_empty()).collect()
}

/// `2(x3),1` -> [2, 2, 2, 1], which must be `nodes` long.
fn parse_tasks(text: &str, nodes: usize) -> Option<Vec<u32>> {
    let mut tasks = Vec::new();
    for part in text.split(',') {
        let (count, times) = match part.split_once("(x") {
            Some((count, rest)) => (count, rest.strip_suffix(')')?.parse::<usize>().ok()?),
            None => (part, 1),
        };
        let count: u32 = count.trim().parse().ok()?;
        if times > nodes {
            return None;
        }
        tasks.extend(std::iter::repeat_n(count, times));
    }
    (tasks.len() == nodes).then_some(tasks)
}

impl Cluster {
    /// `pcl up --slurm` without a file: every node of the allocation, as
    /// many engines on each as Slurm gave it tasks.
    pub(crate) fn slurm_default() -> Cluster {
        Cluster {
            name: None,
            hosts: Vec::new(),
            slurm: Some(SlurmNodes {
                at: 0,
                keys: HostSpec {
                    launcher: super::LauncherKind::Slurm,
                    ..HostSpec::new("")
                },
                engines: None,
                only: None,
                request: None,
            }),
        }
    }

    /// The cluster with the nodes of `allocation` in place of its Slurm
    /// entry (a cluster without one is returned as it is).
    pub(crate) fn place_allocation(
        mut self,
        allocation: &Allocation,
    ) -> Result<Cluster, AllocationError> {
        let Some(slurm) = self.slurm.take() else {
            return Ok(self);
        };
        let chosen: Vec<&AllocatedNode> = match &slurm.only {
            None => allocation.nodes.iter().collect(),
            Some(names) => names
                .iter()
                .map(|name| {
                    allocation
                        .nodes
                        .iter()
                        .find(|node| node.name.eq_ignore_ascii_case(name))
                        .ok_or_else(|| AllocationError::NotAllocated {
                            host: name.clone(),
                            job: allocation.job.clone(),
                            nodes: allocation
                                .nodes
                                .iter()
                                .map(|node| node.name.as_str())
                                .collect::<Vec<_>>()
                                .join(","),
                        })
                })
                .collect::<Result<_, _>>()?,
        };
        if let Some(node) = chosen.iter().find(|node| {
            self.hosts
                .iter()
                .any(|host| host.host.eq_ignore_ascii_case(&node.name))
        }) {
            return Err(AllocationError::Duplicate(node.name.clone()));
        }
        let nodes = chosen.into_iter().map(|node| HostSpec {
            host: node.name.clone(),
            engines: slurm
                .engines
                .unwrap_or(node.tasks)
                .clamp(1, MAX_ENGINES_PER_HOST),
            slurm_job: Some(allocation.job.clone()),
            ..slurm.keys.clone()
        });
        let at = slurm.at.min(self.hosts.len());
        self.hosts.splice(at..at, nodes);
        Ok(self)
    }

    /// What pcl must ask Slurm for before it can start, if anything.
    pub(crate) fn slurm_request(&self) -> Option<&SlurmRequest> {
        self.slurm.as_ref()?.request.as_ref()
    }
}
