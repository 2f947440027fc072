//! `--async` submission, `jobs`, `wait`, `result`, `abort`, `interrupt`,
//! and Ctrl-C for sync calls.

use std::io::Write;
use std::process::{ExitCode, Stdio};

use anyhow::bail;
use tokio::signal::unix::{Signal, SignalKind, signal};

use super::args::{Cli, Command};
use super::session_cmds::connect;
use super::{data, map, px};
use crate::protocol::exit::INTERRUPTED;
use crate::protocol::session::{JobInfo, Reply, Request};
use crate::session::{Client, SessionPaths, fold_ids};

/// Start `request` as a background job and print its id alone on stdout.
/// With `stdin`, all of stdin goes to the session first (the job keeps a
/// copy), so the id comes once stdin has ended.
pub async fn submit(
    session: SessionPaths,
    request: Request,
    stdin: bool,
) -> anyhow::Result<ExitCode> {
    let mut client = connect(&session).await?;
    client
        .send(&Request::Async {
            argv: std::env::args().collect(),
            request: Box::new(request),
        })
        .await?;
    if stdin {
        let writer = client.take_writer().expect("the request went out on it");
        // The job exists already: its id follows whatever happens here,
        // and its result says what the job made of a cut-off input.
        if let Err(e) = super::data::send_stdin(writer).await {
            eprintln!("pcl: {e:#}");
        }
    }
    match client.next().await? {
        Reply::Done => {}
        Reply::Error(e) => bail!(e),
        other => bail!("unexpected reply {other:?}"),
    }
    let Some(id) = client.job() else {
        bail!("the session did not name the job")
    };
    writeln!(std::io::stdout(), "{id}")?;
    Ok(ExitCode::SUCCESS)
}

/// Replies of a call, with Ctrl-C turned into an abort of the call's job:
/// the engines are interrupted, what they finished still arrives, and the
/// caller exits with 130. A second Ctrl-C exits at once.
pub struct Replies {
    client: Client,
    sigint: Signal,
    /// False when replaying a finished job: nothing to abort.
    live: bool,
    /// False when `pcl wait` replays a job only for its exit status: an
    /// async `pull --file` then writes no files.
    write_files: bool,
    interrupted: bool,
    abort_sent: bool,
}

impl Replies {
    pub fn new(client: Client, live: bool) -> anyhow::Result<Self> {
        Ok(Self {
            client,
            sigint: signal(SignalKind::interrupt())?,
            live,
            write_files: true,
            interrupted: false,
            abort_sent: false,
        })
    }

    pub async fn next(&mut self) -> anyhow::Result<Reply> {
        let paths = self.client.paths().clone();
        loop {
            let job = self.client.job();
            let reply = {
                let next = self.client.next_frame();
                tokio::pin!(next);
                loop {
                    tokio::select! {
                        reply = &mut next => break reply?,
                        _ = self.sigint.recv() => {
                            if self.interrupted || !self.live {
                                std::process::exit(INTERRUPTED.into());
                            }
                            self.interrupted = true;
                            if let Some(job) = job {
                                abort(&paths, job).await;
                                self.abort_sent = true;
                            }
                        }
                    }
                }
            };
            // Ctrl-C before the daemon named the job: abort it now.
            if self.interrupted && !self.abort_sent {
                if let Some(job) = self.client.job() {
                    abort(&paths, job).await;
                    self.abort_sent = true;
                }
            }
            if !matches!(reply, Reply::Job(_)) {
                return Ok(reply);
            }
        }
    }

    pub fn interrupted(&self) -> bool {
        self.interrupted
    }

    pub fn writes_files(&self) -> bool {
        self.write_files
    }
}

async fn abort(paths: &SessionPaths, job: u64) {
    eprintln!("pcl: interrupting (Ctrl-C again to quit at once)");
    if let Ok(mut client) = Client::connect(paths).await {
        if client.send(&Request::Abort(job)).await.is_ok() {
            while let Ok(reply) = client.next().await {
                if matches!(reply, Reply::Done | Reply::Error(_)) {
                    break;
                }
            }
        }
    }
}

pub async fn jobs(session: SessionPaths, json: bool) -> anyhow::Result<ExitCode> {
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
pub async fn wait(session: SessionPaths, job: Option<u64>) -> anyhow::Result<ExitCode> {
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
    Ok(ExitCode::from(worst.clamp(0, 255) as u8))
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
pub async fn result(
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
    let mut replies = Replies::new(client, false)?;
    replies.write_files = !status_only;
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
pub async fn control(session: SessionPaths, request: Request) -> anyhow::Result<ExitCode> {
    let mut client = connect(&session).await?;
    client.send(&request).await?;
    match client.next().await? {
        Reply::Done => Ok(ExitCode::SUCCESS),
        Reply::Error(e) => bail!(e),
        other => bail!("unexpected reply {other:?}"),
    }
}
