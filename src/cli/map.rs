//! `pcl map` on the CLI side: gather the items (or stream them), print each
//! item's stdout, report failures with item and engine, show progress.

use std::ffi::OsStr;
use std::io::{IsTerminal, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_bytes::ByteBuf;

use super::args::MapArgs;
use super::call::{Call, Replies, Started, Stdin};
use super::exit::{self, usage};
use crate::protocol::data::{count_lines, open_regular};
use crate::protocol::session::{Reply, Request};
use crate::protocol::status::{INTERRUPTED, MAP_MAX_FAILED};
use crate::protocol::verbs::{MapInput, MapRequest};
use crate::session::SessionPaths;

pub(super) async fn run(session: SessionPaths, args: MapArgs) -> anyhow::Result<ExitCode> {
    let timeout_ms = args.timeout;
    if args.command.contains('\0') {
        return Err(usage(
            "the command contains a NUL byte, which no shell can hold",
        ));
    }
    let from_stdin = args.from.as_deref() == Some(Path::new("-"))
        || (args.from.is_none() && args.items.len() == 1 && args.items[0] == "-");
    let input = if from_stdin {
        if args.background {
            // The CLI does not stay for an async job: the session reads a
            // copy of stdin, removed once read.
            let path = spool_stdin(&session)?;
            if let Err(e) = refuse_nul(&path, "stdin") {
                let _ = std::fs::remove_file(&path);
                return Err(e);
            }
            MapInput::File { path, remove: true }
        } else {
            MapInput::Stream
        }
    } else if let Some(file) = &args.from {
        if !args.items.is_empty() {
            return Err(usage(
                "give items either on the command line or with --from, not both",
            ));
        }
        refuse_nul(file, &file.display().to_string())?;
        MapInput::File {
            path: absolute(file)?,
            remove: false,
        }
    } else {
        if args.items.is_empty() {
            return Err(usage(
                "no items: give them after CMD, or use --from FILE (or - for stdin)",
            ));
        }
        if args.items.iter().any(|i| i.as_bytes().contains(&0)) {
            return Err(usage(
                "an item contains a NUL byte, which no shell can hold",
            ));
        }
        MapInput::Items(
            args.items
                .iter()
                .map(|i| ByteBuf::from(i.as_bytes().to_vec()))
                .collect(),
        )
    };
    // `+FILE`: append, as GNU parallel's `--joblog +FILE` does.
    let (joblog, joblog_append) = match args.joblog.as_deref().map(Path::as_os_str) {
        Some(path) if path.as_bytes().starts_with(b"+") => (
            Some(PathBuf::from(OsStr::from_bytes(&path.as_bytes()[1..]))),
            true,
        ),
        _ => (args.joblog.clone(), false),
    };
    let request = Request::Map(MapRequest {
        targets: args.targets.clone(),
        command: args.command.clone(),
        input,
        unordered: args.unordered,
        retries: args.retries,
        timeout_ms,
        joblog: joblog.as_deref().map(absolute).transpose()?,
        joblog_append,
    });
    let streaming = matches!(&request, Request::Map(m) if matches!(m.input, MapInput::Stream));
    let stdin = if streaming { Stdin::Lines } else { Stdin::None };
    let call = Call::new(session, request)
        .stdin(stdin)
        .background(args.background);
    let Some(Started {
        replies,
        lines: stream,
    }) = call.start().await?
    else {
        return Ok(ExitCode::SUCCESS);
    };
    let code = render(replies).await?;
    // A stream is checked as it is read: the lines before the NUL ran.
    // Its end came before the map's, unless Ctrl-C cut the map short: then
    // stdin may still be open, and nothing is waited for.
    if let Some(task) = stream.filter(|task| task.is_finished()) {
        if let Ok(Some(line)) = task.await {
            return Err(usage(format!(
                "line {line} of stdin holds a NUL byte, which no shell can hold; \
                 it and the lines after it were not run"
            )));
        }
    }
    Ok(code)
}

/// Print map replies, live or replayed from an async job.
pub(super) async fn render(mut replies: Replies) -> anyhow::Result<ExitCode> {
    let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
    let bar = progress_bar();
    let mut last_flush = Instant::now();
    let mut failed_or_unrun = 0;
    let mut aborted = false;
    loop {
        match replies.next().await? {
            Reply::MapTotal(n) => {
                bar.set_length(n);
                bar.set_style(bar_style(true));
            }
            Reply::Task(task) => {
                bar.suspend(|| -> std::io::Result<()> {
                    stdout.write_all(&task.stdout)?;
                    if task.status != 0 || task.note.is_some() {
                        stdout.flush()?;
                        last_flush = Instant::now();
                        let item = String::from_utf8_lossy(&task.item);
                        let mut err = std::io::stderr().lock();
                        write!(
                            err,
                            "pcl: item {item:?} on engine {} ({}): ",
                            task.engine, task.host
                        )?;
                        match &task.note {
                            Some(note) => writeln!(err, "{note} (status {})", task.status)?,
                            None => writeln!(err, "failed with status {}", task.status)?,
                        }
                    }
                    std::io::stderr().lock().write_all(&task.stderr)?;
                    // Keep a pipe reader fed without a write per item.
                    if last_flush.elapsed() > Duration::from_millis(50) {
                        stdout.flush()?;
                        last_flush = Instant::now();
                    }
                    Ok(())
                })?;
                bar.inc(1);
            }
            Reply::MapEnd(end) => {
                failed_or_unrun = end.failed + end.unrun;
                aborted = end.aborted;
                if end.unrun > 0 {
                    let why = if end.aborted {
                        "the map was aborted"
                    } else {
                        "no engine was left to run them"
                    };
                    bar.suspend(|| eprintln!("pcl: {} items did not run: {why}", end.unrun));
                }
            }
            Reply::Done => break,
            Reply::Error(e) => {
                bar.finish_and_clear();
                stdout.flush()?;
                bail!(e)
            }
            other => bail!("unexpected reply {other:?}"),
        }
    }
    bar.finish_and_clear();
    stdout.flush()?;
    if replies.interrupted() || aborted {
        return Ok(exit::code(INTERRUPTED));
    }
    Ok(exit::code(failed_or_unrun.min(MAP_MAX_FAILED as u64) as i32))
}

fn progress_bar() -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(bar_style(false));
    bar
}

fn bar_style(total_known: bool) -> ProgressStyle {
    let template = if total_known {
        "{bar:30} {pos}/{len} {per_sec} ETA {eta}"
    } else {
        "{spinner} {pos} done {per_sec}"
    };
    ProgressStyle::with_template(template).expect("valid template")
}

/// Refuse input whose lines hold a NUL byte (no shell string can), naming
/// the first such line, before anything runs.
fn refuse_nul(path: &Path, what: &str) -> anyhow::Result<()> {
    let mut file = open_regular(path).with_context(|| format!("cannot read {what}"))?;
    match count_lines(&mut file)
        .with_context(|| format!("cannot read {what}"))?
        .nul_line
    {
        Some(line) => Err(usage(format!(
            "line {line} of {what} holds a NUL byte, which no shell can hold; nothing was run"
        ))),
        None => Ok(()),
    }
}

/// Copy stdin to a private file in the session's directory.
fn spool_stdin(paths: &SessionPaths) -> anyhow::Result<PathBuf> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let path = paths
        .dir
        .join(format!("map-input-{}-{nanos}", std::process::id()));
    let mut file = std::fs::File::create(&path)
        .with_context(|| format!("cannot keep stdin for the job in {}", path.display()))?;
    std::io::copy(&mut std::io::stdin().lock(), &mut file)?;
    Ok(path)
}

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    Ok(std::path::absolute(path)?)
}
