//! The engine side: an engine host process (`pcl engine`) owning N engines,
//! each a persistent shell.

mod batch;
mod blocking;
mod data;
mod error;
mod exec;
mod guard;
mod host;
mod leftovers;
mod marker;
mod pipe;
mod procs;
mod read_grid;
mod relay;
mod scratch;
mod shell;
#[cfg(test)]
mod shell_rounds;
mod stdio;
mod workdir;
mod workdir_probe;

pub(crate) use error::EngineError;
pub(crate) use guard::run as run_guard;
pub(crate) use host::run;
pub(crate) use shell::{Capture, OutputSink, Shell, ShellSpec};
