//! The engine side: an engine host process (`pcl engine`) owning N engines,
//! each a persistent shell.

mod batch;
mod data;
mod error;
mod guard;
mod host;
mod leftovers;
mod marker;
mod pipe;
mod procs;
mod quote;
mod scratch;
mod shell;

pub use batch::substitute;
pub use error::EngineError;
pub use guard::run as run_guard;
pub use host::run;
pub use quote::ansi_c_quote;
pub use shell::{Capture, OutputSink, Shell, ShellSpec};
