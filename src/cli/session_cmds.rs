//! `up`, `down`, `ids`, `status` on the CLI side.

use std::io::{IsTerminal, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};

use super::call::connect;
use super::slurm::{AllocationWait, place_current_allocation};
use crate::config::{Cluster, MAX_ENGINES_PER_HOST};
use crate::protocol::session::{EngineState, Reply, Request, StatusReport, UpReport};
use crate::protocol::verbs::RestartRequest;
use crate::session::{Client, NameSource, SessionError, SessionPaths};

/// How long `pcl up` waits for a fresh daemon to open its socket.
const DAEMON_START: Duration = Duration::from_secs(10);
/// How long a daemon may take to withdraw its request to Slurm.
const WITHDRAW_WAIT: Duration = Duration::from_secs(15);

pub(super) async fn up(
    session: Option<String>,
    file: Option<PathBuf>,
    engines: Option<u32>,
    slurm: bool,
) -> anyhow::Result<ExitCode> {
    let mut cluster = match &file {
        Some(path) => Cluster::load(path)?,
        None if slurm => Cluster::slurm_default(),
        None => Cluster::local_default(
            std::thread::available_parallelism()
                .map_or(1, |n| n.get() as u32)
                .min(MAX_ENGINES_PER_HOST),
        ),
    };
    if let Some(n) = engines {
        if !(1..=MAX_ENGINES_PER_HOST).contains(&n) {
            bail!("-n must be between 1 and {MAX_ENGINES_PER_HOST} (engines per host)");
        }
        cluster = cluster.with_engines(n);
    }
    let cluster = place_current_allocation(cluster, slurm)?;
    let (paths, source) = crate::session::to_start(session.as_deref(), cluster.name.as_deref())?;
    paths.create_dir()?;
    // Held until this up is over: a second one of the same name fails at
    // once instead of racing this one.
    let _starting = paths.lock_start()?;
    if Client::connect(&paths).await.is_ok() {
        return Err(SessionError::AlreadyRunning(paths.name.clone()).into());
    }
    // What this daemon logs starts here: the log keeps earlier sessions'.
    let log_start = std::fs::metadata(&paths.log).map_or(0, |m| m.len());
    let mut daemon = spawn_daemon(&paths, &cluster)?;

    // A daemon asking Slurm for nodes opens its socket once they are
    // granted, which takes as long as the queue does.
    let on_terminal = std::io::stderr().is_terminal();
    let mut allocation_wait = match cluster.slurm_request() {
        Some(_) => Some(AllocationWait::new(&paths.name, on_terminal)?),
        None => None,
    };
    let started = Instant::now();
    let mut client = loop {
        match Client::connect(&paths).await {
            Ok(client) => break client,
            Err(_) if allocation_wait.is_some() || started.elapsed() < DAEMON_START => {
                if let Some(status) = daemon.try_wait()? {
                    bail!(SessionError::DaemonFailed(
                        paths.name.clone(),
                        log_tail(&paths, log_start, status.to_string())
                    ));
                }
                match &mut allocation_wait {
                    Some(wait) => {
                        if !wait.pause().await {
                            return withdraw(daemon, wait).await;
                        }
                    }
                    None => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
            Err(_) => bail!(SessionError::DaemonFailed(
                paths.name.clone(),
                log_tail(&paths, log_start, "no socket after 10 s".into())
            )),
        }
    };
    if let Some(wait) = allocation_wait {
        wait.clear();
    }
    client.send(&Request::Up).await?;
    let bar = on_terminal.then(|| {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template("{spinner} starting hosts {pos}/{len} [{elapsed}]")
                .expect("valid template"),
        );
        bar.enable_steady_tick(Duration::from_millis(100));
        bar
    });
    let report = loop {
        match client.next().await? {
            Reply::Progress(p) => {
                if let Some(bar) = &bar {
                    bar.set_length(p.total as u64);
                    bar.set_position(p.settled as u64);
                }
            }
            Reply::Up(report) => break report,
            Reply::Error(e) => bail!(e),
            other => bail!("unexpected reply {other:?}"),
        }
    };
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    // A name the user did not type is said once, on stderr: stdout stays
    // the engine table scripts parse.
    if source == NameSource::ClusterFile {
        eprintln!("pcl: session '{}' (the cluster file's name)", paths.name);
    }
    let code = print_engine_table(&report)?;
    if report
        .status
        .engines
        .iter()
        .all(|e| e.state == EngineState::Dead)
    {
        // No engine came up, so the daemon stopped; its log stays.
        eprintln!(
            "pcl: session '{}' did not start; its log is {}",
            paths.name,
            paths.log.display()
        );
    }
    Ok(code)
}

/// Ctrl-C while Slurm has not granted the allocation: the daemon
/// withdraws the request (on SIGTERM) and stops.
async fn withdraw(
    mut daemon: std::process::Child,
    wait: &AllocationWait,
) -> anyhow::Result<ExitCode> {
    wait.clear();
    // SAFETY: signalling the daemon this call started, not yet reaped.
    unsafe {
        libc::kill(daemon.id() as i32, libc::SIGTERM);
    }
    let started = Instant::now();
    while daemon.try_wait()?.is_none() && started.elapsed() < WITHDRAW_WAIT {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("pcl: stopped waiting for Slurm; the request for nodes was withdrawn");
    Ok(super::exit::code(crate::protocol::status::INTERRUPTED))
}

/// `up` and `restart`: `ID HOST` per live engine on stdout, every failure
/// on stderr; failure if any engine did not come up.
fn print_engine_table(report: &UpReport) -> anyhow::Result<ExitCode> {
    let mut stdout = std::io::stdout().lock();
    for engine in report
        .status
        .engines
        .iter()
        .filter(|e| e.state != EngineState::Dead)
    {
        writeln!(stdout, "{} {}", engine.id, engine.host)?;
    }
    for (host, note) in &report.notes {
        eprintln!("pcl: host {host}: {note}");
    }
    let mut failed = false;
    for (host, reason) in &report.failures {
        eprintln!("pcl: host {host}: {reason}");
        failed = true;
    }
    for engine in report
        .status
        .engines
        .iter()
        .filter(|e| e.state == EngineState::Dead)
    {
        if !report.failures.iter().any(|(h, _)| *h == engine.host) {
            eprintln!(
                "pcl: engine {} on {}: {}",
                engine.id,
                engine.host,
                engine.reason.as_deref().unwrap_or("dead")
            );
            failed = true;
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

pub(super) async fn restart(session: SessionPaths, targets: String) -> anyhow::Result<ExitCode> {
    let mut client = connect(&session).await?;
    client
        .send(&Request::Restart(RestartRequest { targets }))
        .await?;
    match client.next().await? {
        Reply::Up(report) if report.status.engines.is_empty() => {
            eprintln!("pcl: no dead engine among the targets; nothing to restart");
            Ok(ExitCode::SUCCESS)
        }
        Reply::Up(report) => {
            eprintln!("pcl: restarted engines start with fresh state");
            print_engine_table(&report)
        }
        Reply::Error(e) => bail!(e),
        other => bail!("unexpected reply {other:?}"),
    }
}

fn spawn_daemon(paths: &SessionPaths, cluster: &Cluster) -> anyhow::Result<std::process::Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&paths.log)
        .with_context(|| format!("cannot open the session log {}", paths.log.display()))?;
    let mut command = std::process::Command::new(std::env::current_exe()?);
    command
        .args(["session", "serve", "--session", &paths.name])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(log);
    // SAFETY: setsid is async-signal-safe. The daemon leaves our session
    // so that closing the terminal does not take it down.
    unsafe {
        command.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = command.spawn().context("cannot start the session daemon")?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    stdin.write_all(&serde_json::to_vec(cluster)?)?;
    drop(stdin);
    Ok(child)
}

/// Why a daemon did not start, from its log: its own last error whole
/// (it may span lines, as Slurm's words do), else the last lines.
fn log_tail(paths: &SessionPaths, from: u64, why: String) -> String {
    let log = std::fs::read(&paths.log).unwrap_or_default();
    let log = String::from_utf8_lossy(log.get(from as usize..).unwrap_or_default());
    let lines: Vec<&str> = log.lines().collect();
    if let Some(at) = lines.iter().rposition(|line| line.starts_with("pcl: ")) {
        let error = lines[at..].join("\n");
        return error["pcl: ".len()..].to_string();
    }
    let tail: Vec<&str> = log.lines().rev().take(5).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    let why = if tail.is_empty() {
        why
    } else {
        format!("{why}: {}", tail.join("\n"))
    };
    format!("{why}\n(the session's log is {})", paths.log.display())
}

pub(super) async fn down(paths: SessionPaths) -> anyhow::Result<ExitCode> {
    let mut client = Client::connect(&paths).await?;
    client.send(&Request::Down).await?;
    match client.next().await? {
        Reply::Done => {}
        Reply::Error(e) => bail!(e),
        other => bail!("unexpected reply {other:?}"),
    }
    // The daemon removes its socket as the last thing it does, after
    // giving back an allocation it asked Slurm for; a clean stop leaves
    // nothing of the session behind, its log included.
    let started = Instant::now();
    while paths.socket.exists() && started.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if !paths.socket.exists() {
        paths.remove_dir()?;
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn ids(session: SessionPaths) -> anyhow::Result<ExitCode> {
    let mut client = connect(&session).await?;
    client.send(&Request::Ids).await?;
    match client.next().await? {
        Reply::Ids(ids) => {
            let mut out = std::io::stdout().lock();
            for id in ids {
                writeln!(out, "{id}")?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Reply::Error(e) => bail!(e),
        other => bail!("unexpected reply {other:?}"),
    }
}

pub(super) async fn status(session: SessionPaths, json: bool) -> anyhow::Result<ExitCode> {
    let mut client = connect(&session).await?;
    client.send(&Request::Status).await?;
    let report: StatusReport = match client.next().await? {
        Reply::Status(report) => report,
        Reply::Error(e) => bail!(e),
        other => bail!("unexpected reply {other:?}"),
    };
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer(&mut out, &report)?;
        writeln!(out)?;
    } else {
        if let Some(job) = &report.slurm_job {
            writeln!(out, "slurm job {job}")?;
        }
        writeln!(
            out,
            "{:>4}  {:<20} {:<8} {:<4} {:<8} JOB",
            "ID", "HOST", "STATE", "VIA", "SHARES"
        )?;
        for e in &report.engines {
            let job = e.job.as_deref().or(e.reason.as_deref()).unwrap_or("");
            // The engines sharing this one's workdir; `-` for none.
            let own = e.id.to_string();
            let shares = match e.workdir_group.as_deref() {
                Some(group) if group != own => group,
                _ => "-",
            };
            // How the daemon reaches the engine's host; `-` while it does not.
            let via = e.transport.map_or("-", |route| route.name());
            writeln!(
                out,
                "{:>4}  {:<20} {:<8} {via:<4} {shares:<8} {job}",
                e.id, e.host, e.state
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
