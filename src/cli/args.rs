//! The command line, as clap sees it. Nothing here runs anything.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use super::targets::targets_arg;

#[derive(Debug, Parser)]
#[command(
    name = "pcl",
    version,
    about = "Interactive parallel computing across many hosts",
    long_about = "pcl keeps a session of persistent engines (one shell each) on many hosts, \
                  launched over SSH and driven over QUIC, and runs commands on all of them at once."
)]
pub(crate) struct Cli {
    /// Session to use [default: for up, the cluster file's name, else `default`;
    /// for the other verbs `default`, else the only session running]
    #[arg(long, global = true, env = "PCL_SESSION", value_name = "NAME")]
    pub session: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Start a session: launch the engines of CLUSTER (default: one local engine per core)
    Up {
        /// Cluster file (TOML); without it, engines run on this machine
        cluster: Option<PathBuf>,
        /// Engines per host, overriding the cluster file
        #[arg(short = 'n', long = "engines", value_name = "N")]
        engines: Option<u32>,
        /// Engines on the nodes of the current Slurm allocation (inside salloc or sbatch)
        #[arg(long)]
        slurm: bool,
    },
    /// Stop the session: every engine, shell and the daemon
    Down,
    /// Print the ids of the engines that can take work, one per line
    Ids,
    /// Show every engine: id, host, state (idle/busy/dead) and current job
    Status {
        /// One JSON document
        #[arg(long)]
        json: bool,
    },
    /// Run a command in the shell of every target engine
    Px(PxArgs),
    /// Relaunch dead target engines with fresh state; live ones are left alone
    Restart {
        /// Engines to consider: `all`, ids `0,2,5-7`, or hosts `node[01-04]`
        #[arg(short = 't', long, default_value = "all", value_name = "T", value_parser = targets_arg)]
        targets: String,
    },
    /// Run CMD once per item, load-balanced over the engines; stdout in input order
    Map(MapArgs),
    /// List async jobs: id, state, engines, elapsed time, command
    Jobs {
        /// One JSON document
        #[arg(long)]
        json: bool,
    },
    /// Wait for an async job (default: all of them); exit with its status
    Wait {
        /// Job id, as `--async` printed it
        job: Option<u64>,
    },
    /// Print an async job's output as the sync call would have, with its exit status
    Result {
        /// Replay for the exit status only: no files written (`pcl wait`)
        #[arg(long, hide = true)]
        status_only: bool,
        /// Job id, as `--async` printed it
        job: u64,
    },
    /// Cancel a job's pending work and interrupt its running commands
    Abort {
        /// Job id, as `--async` printed it
        job: u64,
    },
    /// An interactive prompt: each line runs on the targets as a streamed px
    Console {
        /// Engines to run on, until `:targets` changes them
        #[arg(short = 't', long, default_value = "all", value_name = "T", value_parser = targets_arg)]
        targets: String,
    },
    /// Send SIGINT to the commands running on the target engines
    Interrupt {
        /// Engines: `all`, ids `0,2,5-7`, or hosts `node[01-04]`
        #[arg(short = 't', long, default_value = "all", value_name = "T", value_parser = targets_arg)]
        targets: String,
    },
    /// Set shell variables on every target, or copy a file to each
    Push(PushArgs),
    /// Print variables' values from every target, or fetch a file from each
    Pull(PullArgs),
    /// Split items (or lines) into contiguous blocks, one per target
    Scatter(ScatterArgs),
    /// Concatenate every target's array (or file), in engine order
    Gather(GatherArgs),
    /// Print a shell completion script
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the manual pages (roff) into DIR, one per verb and pcl-cluster(5)
    #[command(hide = true)]
    Man { dir: PathBuf },
    /// Expand a host range as the cluster file and --targets read it, like `nodeset -e`
    #[command(hide = true)]
    Nodeset {
        /// Print the folded form instead, like `nodeset -f`
        #[arg(short = 'f', long)]
        fold: bool,
        /// Node set, such as `node[01-16]!node13`
        #[arg(allow_hyphen_values = true)]
        set: String,
    },
    /// Engine host (started by the session daemon)
    #[command(hide = true)]
    Engine {
        /// Address to listen on for QUIC [default: 0.0.0.0:0]
        #[arg(long)]
        bind: Option<SocketAddr>,
        /// Run as the engine host's guard (reads shell pids on stdin)
        #[arg(long)]
        guard: bool,
    },
    /// Session daemon (started by `pcl up`)
    #[command(hide = true)]
    Session {
        #[command(subcommand)]
        action: SessionAction,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum SessionAction {
    /// Serve the session named by --session; the cluster arrives on stdin
    Serve,
}

#[derive(Debug, Args)]
pub(crate) struct PxArgs {
    /// Engines to run on: `all`, ids `0,2,5-7`, or hosts `node[01-04]`
    #[arg(short = 't', long, default_value = "all", value_name = "T", value_parser = targets_arg)]
    pub targets: String,
    /// Kill the command (not the shell) after S seconds; its status is 124
    #[arg(long, value_name = "S", value_parser = timeout_ms)]
    pub timeout: Option<u64>,
    /// Group engines with identical stdout, like `dshbak -c`, each block headed by its ids and hosts
    #[arg(short = 'b', long = "gather")]
    pub gather: bool,
    /// Each engine's exact stdout bytes, in engine order, without prefixes
    #[arg(long, conflicts_with_all = ["gather", "json"])]
    pub raw: bool,
    /// One JSON document with every engine's result
    #[arg(long, conflicts_with = "gather")]
    pub json: bool,
    /// Run in the background: print a job id at once (see jobs, wait, result)
    #[arg(long = "async")]
    pub background: bool,
    /// Print lines as they come, engines interleaved (the default on a terminal)
    #[arg(long, conflicts_with_all = ["no_stream", "gather", "raw", "json"])]
    pub stream: bool,
    /// Print in engine order, the first unfinished engine's lines as they come (the default in a pipe)
    #[arg(long)]
    pub no_stream: bool,
    /// The command; several words are joined with spaces
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct MapArgs {
    /// Engines to run on: `all`, ids `0,2,5-7`, or hosts `node[01-04]`
    #[arg(short = 't', long, default_value = "all", value_name = "T", value_parser = targets_arg)]
    pub targets: String,
    /// Print each item's output as it finishes, not in input order
    #[arg(long)]
    pub unordered: bool,
    /// Run a failing item up to N times in all
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub retries: u32,
    /// Write a GNU parallel style job log (TSV) to FILE (`+FILE`: append to it)
    #[arg(long, value_name = "FILE")]
    pub joblog: Option<PathBuf>,
    /// Kill a task (not the shell) after S seconds; its status is 124
    #[arg(long, value_name = "S", value_parser = timeout_ms)]
    pub timeout: Option<u64>,
    /// Read items from the lines of FILE (`-`: stdin)
    #[arg(long, value_name = "FILE")]
    pub from: Option<PathBuf>,
    /// Run in the background: print a job id at once (see jobs, wait, result)
    #[arg(long = "async")]
    pub background: bool,
    /// The command; `{}` becomes the shell-quoted item (appended when absent)
    #[arg(value_name = "CMD")]
    pub command: String,
    /// The items; a lone `-` reads them from stdin, one per line
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "ITEM"
    )]
    pub items: Vec<std::ffi::OsString>,
}

/// `--timeout S`: positive seconds, fractions allowed, as milliseconds.
fn timeout_ms(text: &str) -> Result<u64, String> {
    match text.parse::<f64>() {
        Ok(s) if s > 0.0 && s.is_finite() => Ok((s * 1000.0).round().max(1.0) as u64),
        _ => Err("expected a positive number of seconds, like 30 or 0.5".into()),
    }
}

#[derive(Debug, Args)]
pub(crate) struct PushArgs {
    /// Engines: `all`, ids `0,2,5-7`, or hosts `node[01-04]`
    #[arg(short = 't', long, default_value = "all", value_name = "T", value_parser = targets_arg)]
    pub targets: String,
    /// One JSON document with every engine's result
    #[arg(long)]
    pub json: bool,
    /// Run in the background: print a job id at once (see jobs, wait, result)
    #[arg(long = "async")]
    pub background: bool,
    /// Copy LOCAL (`-`: stdin) to each target (once per shared workdir) as
    /// REMOTE, relative to the engine's workdir; `{id}` and `{host}` in REMOTE
    /// name the engine and its host [default REMOTE: LOCAL's file name]
    #[arg(long, value_name = "LOCAL")]
    pub file: Option<PathBuf>,
    /// NAME=VALUE assignments, or REMOTE with --file
    #[arg(value_name = "NAME=VALUE", required_unless_present = "file")]
    pub args: Vec<OsString>,
}

#[derive(Debug, Args)]
pub(crate) struct PullArgs {
    /// Engines: `all`, ids `0,2,5-7`, or hosts `node[01-04]`
    #[arg(short = 't', long, default_value = "all", value_name = "T", value_parser = targets_arg)]
    pub targets: String,
    /// One JSON document with every engine's result
    #[arg(long, conflicts_with = "raw")]
    pub json: bool,
    /// Run in the background: print a job id at once (see jobs, wait, result);
    /// with --file, `pcl result` writes the files
    #[arg(long = "async")]
    pub background: bool,
    /// The exact bytes of one variable of one target, nothing added
    #[arg(long, conflicts_with = "file")]
    pub raw: bool,
    /// Fetch REMOTE (relative to the workdir; `{id}`, `{host}` expanded) from
    /// each target as DEST/REMOTE.<ID>, once per shared file
    #[arg(long, value_name = "REMOTE", conflicts_with = "names")]
    pub file: Option<String>,
    /// Directory for --file [default: .]
    #[arg(long, value_name = "DIR", requires = "file")]
    pub dest: Option<PathBuf>,
    /// Variable names
    #[arg(value_name = "NAME", required_unless_present = "file")]
    pub names: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct ScatterArgs {
    /// Engines: `all`, ids `0,2,5-7`, or hosts `node[01-04]`
    #[arg(short = 't', long, default_value = "all", value_name = "T", value_parser = targets_arg)]
    pub targets: String,
    /// One JSON document with every engine's result
    #[arg(long)]
    pub json: bool,
    /// Run in the background: print a job id at once (see jobs, wait, result)
    #[arg(long = "async")]
    pub background: bool,
    /// Write each target's block of lines to REMOTE (relative to the workdir;
    /// `{id}`, `{host}` expanded: one file per engine, e.g. 'part.{id}')
    #[arg(long, value_name = "REMOTE", requires = "from")]
    pub file: Option<String>,
    /// Take the items from the lines of FILE (`-`: stdin)
    #[arg(long, value_name = "FILE")]
    pub from: Option<OsString>,
    /// NAME, then the items (unless --from); put `--` before items that start with `-`
    #[arg(value_name = "NAME [ITEM]...")]
    pub args: Vec<OsString>,
}

#[derive(Debug, Args)]
pub(crate) struct GatherArgs {
    /// Engines: `all`, ids `0,2,5-7`, or hosts `node[01-04]`
    #[arg(short = 't', long, default_value = "all", value_name = "T", value_parser = targets_arg)]
    pub targets: String,
    /// One JSON document with every engine's result
    #[arg(long)]
    pub json: bool,
    /// Run in the background: print a job id at once (see jobs, wait, result)
    #[arg(long = "async")]
    pub background: bool,
    /// Concatenate each target's REMOTE (relative to the workdir; `{id}`,
    /// `{host}` expanded) instead
    #[arg(long, value_name = "REMOTE", conflicts_with = "name")]
    pub file: Option<String>,
    /// The array (or variable) to gather
    #[arg(value_name = "NAME", required_unless_present = "file")]
    pub name: Option<String>,
}
