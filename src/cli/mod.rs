//! The binary's edge: parse the command line, run the verb (mostly by
//! asking the session daemon), render the answer, pick the exit status.

mod args;
mod data;
mod jobs;
mod map;
mod px;
mod render;
mod session_cmds;
mod slurm;
mod targets;

use std::io::Write;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};

pub use args::Cli;
use args::{Command, SessionAction};

use crate::protocol::session::Request;

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("pcl: {e:#}");
            ExitCode::FAILURE
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
            let runtime = multi_thread()?;
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
            let pages = man_pages()?;
            match dir {
                None => std::io::stdout().write_all(&pages[0].1)?,
                Some(dir) => {
                    for (name, roff) in pages {
                        std::fs::write(dir.join(name), roff)?;
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Up {
            cluster,
            engines,
            slurm,
        } => current_thread()?.block_on(session_cmds::up(session, cluster, engines, slurm)),
        Command::Down => current_thread()?.block_on(session_cmds::down(session)),
        Command::Ids => current_thread()?.block_on(session_cmds::ids(session)),
        Command::Status { json } => current_thread()?.block_on(session_cmds::status(session, json)),
        Command::Px(args) => current_thread()?.block_on(px::run(session, args)),
        Command::Restart { targets } => {
            current_thread()?.block_on(session_cmds::restart(session, targets))
        }
        Command::Map(args) => current_thread()?.block_on(map::run(session, args)),
        Command::Jobs { json } => current_thread()?.block_on(jobs::jobs(session, json)),
        Command::Wait { job } => current_thread()?.block_on(jobs::wait(session, job)),
        Command::Result { job, status_only } => {
            current_thread()?.block_on(jobs::result(session, job, status_only))
        }
        Command::Abort { job } => {
            current_thread()?.block_on(jobs::control(session, Request::Abort(job)))
        }
        Command::Interrupt { targets } => {
            current_thread()?.block_on(jobs::control(session, Request::Interrupt { targets }))
        }
        Command::Push(args) => current_thread()?.block_on(data::push(session, args)),
        Command::Pull(args) => current_thread()?.block_on(data::pull(session, args)),
        Command::Scatter(args) => current_thread()?.block_on(data::scatter(session, args)),
        Command::Gather(args) => current_thread()?.block_on(data::gather(session, args)),
    }
}

/// One-shot calls are short: a single thread starts fastest.
fn current_thread() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

fn multi_thread() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
}

/// Every manual page as (file name, roff), as `man/` holds them: `pcl.1`
/// first, then a `pcl-COMMAND.1` for each command it lists, which is
/// where each command's options are.
pub fn man_pages() -> std::io::Result<Vec<(String, Vec<u8>)>> {
    let mut cli = Cli::command().disable_help_subcommand(true);
    cli.build();
    let commands = cli
        .get_subcommands()
        .filter(|command| !command.is_hide_set())
        .cloned();
    std::iter::once(cli.clone())
        .chain(commands)
        .map(|command| {
            let page =
                clap_mangen::Man::new(command).source(format!("pcl {}", env!("CARGO_PKG_VERSION")));
            let mut roff = Vec::new();
            page.render(&mut roff)?;
            Ok((page.get_filename(), roff))
        })
        .collect()
}
