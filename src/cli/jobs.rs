//! The verbs about async jobs: `jobs`, `wait`, `result`, `abort` (and
//! `interrupt`, answered the same way).

use std::io::Write;
use std::process::{ExitCode, Stdio};

use anyhow::bail;

use super::args::{Cli, Command};
use super::call::{Replies, connect};
use super::exit;
use super::{data, map, px};
use crate::protocol::session::{JobInfo, Reply, Request};
use crate::session::{SessionPaths, fold_ids};

pub(super) async fn jobs(session: SessionPaths, json: bool) -> anyhow::Result<ExitCode> {
    let list = job_list(session, Request::Jobs).await?;
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer(&mut out, &serde_json::json!({ "jobs": list }))?;
        writeln!(out)?;
    } else {
        for j in &list {
            writeln!(
                out,
                "{}\t{}\t{}\t{:.1}s\t{}",
                j.id,
                j.state,
                fold_ids(&j.engines),
                j.elapsed_s,
                j.command
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Wait for the job(s), then take the exit status each one's `result`
/// would have: rendering is the CLI's, so ask `pcl result` itself.
pub(super) async fn wait(session: SessionPaths, job: Option<u64>) -> anyhow::Result<ExitCode> {
    let name = session.name.clone();
    let list = job_list(session, Request::Wait(job)).await?;
    let mut worst = 0;
    for j in &list {
        let status = std::process::Command::new(std::env::current_exe()?)
            .args([
                "--session",
                &name,
                "result",
                "--status-only",
                &j.id.to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?;
        worst = worst.max(status.code().unwrap_or(1));
    }
    Ok(exit::code(worst))
}

async fn job_list(session: SessionPaths, request: Request) -> anyhow::Result<Vec<JobInfo>> {
    let mut client = connect(&session).await?;
    client.send(&request).await?;
    let mut list = Vec::new();
    loop {
        match client.next().await? {
            Reply::Jobs(jobs) => list = jobs,
            Reply::Done => return Ok(list),
            Reply::Error(e) => bail!(e),
            other => bail!("unexpected reply {other:?}"),
        }
    }
}

/// Replay a job through the renderer of its own verb, parsed from the
/// command line that started it.
pub(super) async fn result(
    session: SessionPaths,
    job: u64,
    status_only: bool,
) -> anyhow::Result<ExitCode> {
    let mut client = connect(&session).await?;
    client.send(&Request::Result(job)).await?;
    let argv = match client.next().await? {
        Reply::JobArgv(argv) => argv,
        Reply::Error(e) => bail!(e),
        other => bail!("unexpected reply {other:?}"),
    };
    let cli = <Cli as clap::Parser>::try_parse_from(&argv)?;
    let replies = Replies::replay(client, !status_only)?;
    match cli.command {
        Command::Px(args) => px::render(args, replies).await,
        Command::Map(_) => map::render(replies).await,
        Command::Push(args) => data::render_push(args, replies).await,
        Command::Pull(args) => data::render_pull(args, replies).await,
        Command::Scatter(args) => data::render_scatter(args, replies).await,
        Command::Gather(args) => data::render_gather(args, replies).await,
        other => bail!("job {job} ({other:?}) has no output to replay"),
    }
}

/// `abort` and `interrupt`: a request answered by `Done`.
pub(super) async fn control(session: SessionPaths, request: Request) -> anyhow::Result<ExitCode> {
    let mut client = connect(&session).await?;
    client.send(&request).await?;
    match client.next().await? {
        Reply::Done => Ok(ExitCode::SUCCESS),
        Reply::Error(e) => bail!(e),
        other => bail!("unexpected reply {other:?}"),
    }
}
