//! The binary's edge: parse the command line, run the verb (mostly by
//! asking the session daemon), render the answer, pick the exit status.

mod args;
mod call;
mod console;
mod data;
mod data_view;
mod exit;
mod jobs;
mod live;
mod man;
mod map;
mod px;
mod render;
mod session_cmds;
mod slurm;
mod targets;

use std::io::Write;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};

pub(crate) use args::Cli;
use args::{Command, SessionAction};

use crate::protocol::session::Request;
use crate::session::SessionPaths;

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            let (code, message) = exit::for_error(&e);
            if let Some(message) = message {
                eprintln!("{message}");
            }
            code
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let session = cli.session;
    match cli.command {
        Command::Engine { guard: true, .. } => {
            crate::engine::run_guard();
            Ok(ExitCode::SUCCESS)
        }
        Command::Engine { bind, .. } => {
            let runtime = engine_host_runtime()?;
            let result = runtime.block_on(crate::engine::run(bind));
            // A host that stops on its own (no session within the grace)
            // still has a blocking read on the tether pending; waiting for
            // it would keep the process alive as long as the channel.
            runtime.shutdown_background();
            result?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Session {
            action: SessionAction::Serve,
        } => {
            let name = session.ok_or_else(|| anyhow::anyhow!("--session is required"))?;
            crate::session::serve_main(&name)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "pcl", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Man { dir } => {
            let mut out = std::io::stdout().lock();
            for name in man::write_all(&dir)? {
                writeln!(out, "{}", dir.join(name).display())?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Nodeset { fold, set } => {
            let mut nodes = crate::config::NodeSet::parse(&set)?;
            let text = if fold {
                nodes.fold()
            } else {
                nodes.names().join(" ")
            };
            println!("{text}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Up {
            cluster,
            engines,
            slurm,
        } => current_thread()?.block_on(session_cmds::up(session, cluster, engines, slurm)),
        // Its own loop, with a runtime per command it runs.
        Command::Console { targets } => {
            let session = crate::session::to_reach(session.as_deref())?;
            console::run(session, targets)
        }
        command => {
            let session = crate::session::to_reach(session.as_deref())?;
            current_thread()?.block_on(reach(session, command))
        }
    }
}

/// The verbs that talk to a running session.
async fn reach(session: SessionPaths, command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Down => session_cmds::down(session).await,
        Command::Ids => session_cmds::ids(session).await,
        Command::Status { json } => session_cmds::status(session, json).await,
        Command::Px(args) => px::run(session, args).await,
        Command::Restart { targets } => session_cmds::restart(session, targets).await,
        Command::Map(args) => map::run(session, args).await,
        Command::Jobs { json } => jobs::jobs(session, json).await,
        Command::Wait { job } => jobs::wait(session, job).await,
        Command::Result { job, status_only } => jobs::result(session, job, status_only).await,
        Command::Abort { job } => jobs::control(session, Request::Abort(job)).await,
        Command::Interrupt { targets } => {
            jobs::control(session, Request::Interrupt { targets }).await
        }
        Command::Push(args) => data::push(session, args).await,
        Command::Pull(args) => data::pull(session, args).await,
        Command::Scatter(args) => data::scatter(session, args).await,
        Command::Gather(args) => data::gather(session, args).await,
        Command::Up { .. }
        | Command::Engine { .. }
        | Command::Session { .. }
        | Command::Completions { .. }
        | Command::Man { .. }
        | Command::Nodeset { .. }
        | Command::Console { .. } => unreachable!("handled before a session is chosen"),
    }
}

/// One-shot calls are short: a single thread starts fastest.
fn current_thread() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// One thread: the engine host mostly waits on its shells and one QUIC
/// connection. tokio's one-thread runtime costs it less per `px` than one
/// worker of the multi-thread runtime (`ENGINES=4 bench/shells.sh`), and
/// file work that may block goes to threads of its own
/// (`engine::blocking`), so QUIC keeps its thread during a transfer.
fn engine_host_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}
