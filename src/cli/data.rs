//! `push`, `pull`, `scatter`, `gather` on the CLI side: check the input
//! before anything is contacted, stream stdin when asked, render replies.
//!
//! Exit status: 0 when every target succeeded; 1 when an engine reported
//! an error (unset variable, missing file, full disk) or the request was
//! refused as a whole (no session, bad targets, unreadable local file); 2
//! for invalid input found before any engine was contacted (bad names,
//! bad remote paths, misused options); 255 when an engine could not be
//! reached or was lost mid-transfer. With several engines failing, the
//! largest applies.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::{IsTerminal, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;

use super::render::prefixed;
use super::session_cmds::connect;
use crate::protocol::data::{
    CHUNK, DataError, DataRequest, Items, Source, check_name, check_remote, split_assignment,
};
use crate::protocol::session::{EngineDone, Reply, Request};
use crate::session::Client;

/// Exit status for input refused before any engine was contacted.
const USAGE_STATUS: u8 = 2;

/// Transfers shorter than this show no progress bar.
const BAR_DELAY: Duration = Duration::from_secs(1);

#[derive(Debug, Args)]
pub struct PushArgs {
    /// Engines: `all`, ids `0,2,5-7`, or hosts `node[01-04]`
    #[arg(short = 't', long, default_value = "all", value_name = "T")]
    pub targets: String,
    /// One JSON document with every engine's result
    #[arg(long)]
    pub json: bool,
    /// Copy LOCAL (`-`: stdin) to each target (once per host) as REMOTE,
    /// relative to the engine's workdir [default REMOTE: LOCAL's file name]
    #[arg(long, value_name = "LOCAL")]
    pub file: Option<PathBuf>,
    /// NAME=VALUE assignments, or REMOTE with --file
    #[arg(value_name = "NAME=VALUE", required_unless_present = "file")]
    pub args: Vec<OsString>,
}

#[derive(Debug, Args)]
pub struct PullArgs {
    /// Engines: `all`, ids `0,2,5-7`, or hosts `node[01-04]`
    #[arg(short = 't', long, default_value = "all", value_name = "T")]
    pub targets: String,
    /// One JSON document with every engine's result
    #[arg(long, conflicts_with = "raw")]
    pub json: bool,
    /// The exact bytes of one variable of one target, nothing added
    #[arg(long, conflicts_with = "file")]
    pub raw: bool,
    /// Fetch REMOTE (relative to the workdir) from each target as DEST/REMOTE.<ID>
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
pub struct ScatterArgs {
    /// Engines: `all`, ids `0,2,5-7`, or hosts `node[01-04]`
    #[arg(short = 't', long, default_value = "all", value_name = "T")]
    pub targets: String,
    /// One JSON document with every engine's result
    #[arg(long)]
    pub json: bool,
    /// Write each target's block of lines to REMOTE (relative to the workdir)
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
pub struct GatherArgs {
    /// Engines: `all`, ids `0,2,5-7`, or hosts `node[01-04]`
    #[arg(short = 't', long, default_value = "all", value_name = "T")]
    pub targets: String,
    /// One JSON document with every engine's result
    #[arg(long)]
    pub json: bool,
    /// Concatenate each target's REMOTE (relative to the workdir) instead
    #[arg(long, value_name = "REMOTE", conflicts_with = "name")]
    pub file: Option<String>,
    /// The array (or variable) to gather
    #[arg(value_name = "NAME", required_unless_present = "file")]
    pub name: Option<String>,
}

fn refuse(why: impl std::fmt::Display) -> anyhow::Result<ExitCode> {
    eprintln!("pcl: {why}");
    Ok(ExitCode::from(USAGE_STATUS))
}

pub async fn push(session: Option<String>, args: PushArgs) -> anyhow::Result<ExitCode> {
    let request = match &args.file {
        Some(local) => {
            let stdin = local.as_os_str() == "-";
            let remote = match args.args.as_slice() {
                [] if stdin => return refuse("push --file - needs a REMOTE name"),
                [] => match local.file_name() {
                    Some(name) => name.to_string_lossy().into_owned(),
                    None => return refuse(format!("{} names no file", local.display())),
                },
                [remote] => remote.to_string_lossy().into_owned(),
                _ => return refuse("push --file takes LOCAL and at most one REMOTE"),
            };
            if let Err(e) = check_remote(&remote) {
                return refuse(e);
            }
            DataRequest::PushFile {
                targets: args.targets.clone(),
                from: if stdin {
                    Source::Stdin
                } else {
                    Source::Path(readable(local)?)
                },
                remote,
            }
        }
        None => {
            let vars: Result<Vec<_>, DataError> = args
                .args
                .iter()
                .map(|a| split_assignment(a.as_bytes()))
                .collect();
            match vars {
                Ok(vars) => DataRequest::PushVars {
                    targets: args.targets.clone(),
                    vars: vars
                        .into_iter()
                        .map(|(n, v)| (n, serde_bytes::ByteBuf::from(v)))
                        .collect(),
                },
                Err(e) => return refuse(e),
            }
        }
    };
    let stdin = matches!(
        request,
        DataRequest::PushFile {
            from: Source::Stdin,
            ..
        }
    );
    let mut client = connect(session).await?;
    client.send(&Request::Data(request)).await?;
    if stdin {
        send_stdin(&mut client).await?;
    }
    let mut view = View::new(args.json);
    loop {
        match client.next().await? {
            Reply::Transfer { done, total } => view.progress(done, total),
            Reply::EngineDone(done) => view.done(done, json!({})),
            Reply::Done => break,
            Reply::Error(e) => bail!(e),
            other => bail!("unexpected reply {other:?}"),
        }
    }
    view.finish()
}

pub async fn pull(session: Option<String>, args: PullArgs) -> anyhow::Result<ExitCode> {
    if let Some(remote) = &args.file {
        if let Err(e) = check_remote(remote) {
            return refuse(e);
        }
        let dest = std::path::absolute(args.dest.as_deref().unwrap_or(Path::new(".")))?;
        let mut client = connect(session).await?;
        let request = DataRequest::PullFile {
            targets: args.targets,
            remote: remote.clone(),
            dest: dest.clone(),
        };
        client.send(&Request::Data(request)).await?;
        let mut view = View::new(args.json);
        loop {
            match client.next().await? {
                Reply::Transfer { done, total } => view.progress(done, total),
                Reply::EngineDone(done) => {
                    let mut path = dest.join(remote).into_os_string();
                    path.push(format!(".{}", done.id));
                    let extra = json!({ "path": Path::new(&path).display().to_string() });
                    view.done(done, extra);
                }
                Reply::Done => break,
                Reply::Error(e) => bail!(e),
                other => bail!("unexpected reply {other:?}"),
            }
        }
        return view.finish();
    }
    if let Some(Err(e)) = args
        .names
        .iter()
        .map(|n| check_name(n))
        .find(Result::is_err)
    {
        return refuse(e);
    }
    if args.raw && args.names.len() != 1 {
        return refuse("--raw prints exactly one variable of one engine");
    }
    let mut client = connect(session).await?;
    let request = DataRequest::PullVars {
        targets: args.targets,
        names: args.names.clone(),
        single: args.raw,
    };
    client.send(&Request::Data(request)).await?;
    let mut view = View::new(args.json);
    let mut stdout = std::io::stdout().lock();
    // Chunks of one value arrive in a row; it is printed once whole.
    let mut current: Option<(u32, String, Vec<u8>)> = None;
    let mut values: BTreeMap<String, Value> = BTreeMap::new();
    let several = args.names.len() > 1;
    let flush = |current: &mut Option<(u32, String, Vec<u8>)>,
                 values: &mut BTreeMap<String, Value>,
                 stdout: &mut std::io::StdoutLock|
     -> std::io::Result<()> {
        let Some((id, name, bytes)) = current.take() else {
            return Ok(());
        };
        if args.json {
            values.insert(name, Value::String(String::from_utf8_lossy(&bytes).into()));
        } else if args.raw {
            stdout.write_all(&bytes)?;
        } else {
            let prefix = if several {
                format!("[{id}:{name}] ")
            } else {
                format!("[{id}] ")
            };
            if bytes.is_empty() {
                writeln!(stdout, "{prefix}")?;
            } else {
                prefixed(stdout, &prefix, &bytes)?;
            }
        }
        stdout.flush()
    };
    loop {
        match client.next().await? {
            Reply::Value { id, name, data } => match &mut current {
                Some((i, n, bytes)) if *i == id && *n == name => bytes.extend(data),
                _ => {
                    flush(&mut current, &mut values, &mut stdout)?;
                    current = Some((id, name, data));
                }
            },
            Reply::EngineDone(done) => {
                flush(&mut current, &mut values, &mut stdout)?;
                let extra = json!({ "values": std::mem::take(&mut values) });
                view.done(done, extra);
            }
            Reply::Done => break,
            Reply::Error(e) => bail!(e),
            other => bail!("unexpected reply {other:?}"),
        }
    }
    drop(stdout);
    view.finish()
}

pub async fn scatter(session: Option<String>, args: ScatterArgs) -> anyhow::Result<ExitCode> {
    let from = match &args.from {
        None => None,
        Some(f) if f == "-" => Some(Source::Stdin),
        Some(f) => Some(Source::Path(readable(Path::new(f))?)),
    };
    let request = match &args.file {
        Some(remote) => {
            if let Err(e) = check_remote(remote) {
                return refuse(e);
            }
            if !args.args.is_empty() {
                return refuse("scatter --file takes its lines from --from, not from arguments");
            }
            DataRequest::ScatterFile {
                targets: args.targets.clone(),
                remote: remote.clone(),
                from: from.clone().expect("clap requires --from with --file"),
            }
        }
        None => {
            let Some((name, items)) = args.args.split_first() else {
                return refuse("scatter needs a NAME (or --file REMOTE)");
            };
            let name = name.to_string_lossy().into_owned();
            if let Err(e) = check_name(&name) {
                return refuse(e);
            }
            let items = match (&from, items.is_empty()) {
                (Some(source), true) => Items::Lines(source.clone()),
                (Some(_), false) => {
                    return refuse("give items as arguments or with --from, not both");
                }
                (None, _) => Items::Args(
                    items
                        .iter()
                        .map(|i| serde_bytes::ByteBuf::from(i.as_bytes().to_vec()))
                        .collect(),
                ),
            };
            DataRequest::ScatterVar {
                targets: args.targets.clone(),
                name,
                items,
            }
        }
    };
    let mut client = connect(session).await?;
    client.send(&Request::Data(request)).await?;
    if matches!(from, Some(Source::Stdin)) {
        send_stdin(&mut client).await?;
    }
    let mut view = View::new(args.json);
    loop {
        match client.next().await? {
            Reply::Transfer { done, total } => view.progress(done, total),
            Reply::EngineDone(done) => view.done(done, json!({})),
            Reply::Done => break,
            Reply::Error(e) => bail!(e),
            other => bail!("unexpected reply {other:?}"),
        }
    }
    view.finish()
}

pub async fn gather(session: Option<String>, args: GatherArgs) -> anyhow::Result<ExitCode> {
    let request = match (&args.file, &args.name) {
        (Some(remote), _) => match check_remote(remote) {
            Ok(_) => DataRequest::GatherFile {
                targets: args.targets.clone(),
                remote: remote.clone(),
            },
            Err(e) => return refuse(e),
        },
        (None, Some(name)) => match check_name(name) {
            Ok(()) => DataRequest::GatherVar {
                targets: args.targets.clone(),
                name: name.clone(),
            },
            Err(e) => return refuse(e),
        },
        (None, None) => return refuse("gather needs a NAME (or --file REMOTE)"),
    };
    let array = args.file.is_none();
    let mut client = connect(session).await?;
    client.send(&Request::Data(request)).await?;
    let mut view = View::new(args.json);
    let mut stdout = std::io::stdout().lock();
    let (mut received, mut held) = (0u64, Vec::new());
    loop {
        match client.next().await? {
            Reply::Output { mut data, .. } => {
                received += data.len() as u64;
                view.progress(received, None);
                if args.json {
                    held.extend(data);
                } else {
                    // Array elements come NUL-ended; on stdout, one a line.
                    if array {
                        data.iter_mut()
                            .filter(|b| **b == 0)
                            .for_each(|b| *b = b'\n');
                    }
                    stdout.write_all(&data)?;
                }
            }
            Reply::EngineDone(done) => {
                stdout.flush()?;
                let held = std::mem::take(&mut held);
                let extra = if array {
                    let items: Vec<Value> = held
                        .split(|&b| b == 0)
                        .take(held.iter().filter(|&&b| b == 0).count())
                        .map(|item| Value::String(String::from_utf8_lossy(item).into()))
                        .collect();
                    json!({ "items": items })
                } else {
                    json!({ "data": String::from_utf8_lossy(&held) })
                };
                view.done(done, extra);
            }
            Reply::Done => break,
            Reply::Error(e) => bail!(e),
            other => bail!("unexpected reply {other:?}"),
        }
    }
    drop(stdout);
    view.finish()
}

/// A local path the daemon will open itself: it must exist and be
/// readable now, and the daemon gets it absolute.
/// A regular file, because the daemon opens it by name on its own (a
/// `/dev/fd/N` would be the daemon's fd) and may read it twice (lines are
/// counted first): pipes go through `-`.
fn readable(path: &Path) -> anyhow::Result<PathBuf> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    if !file.metadata()?.is_file() {
        bail!(
            "{} is not a regular file; give a pipe or a stream as `-` (stdin)",
            path.display()
        );
    }
    Ok(std::path::absolute(path)?)
}

/// Our stdin to the daemon, in chunks, then the end.
async fn send_stdin(client: &mut Client) -> anyhow::Result<()> {
    let mut stdin = tokio::io::stdin();
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = stdin.read(&mut buf).await.context("cannot read stdin")?;
        if n == 0 {
            break;
        }
        client.send(&Request::Chunk(buf[..n].to_vec())).await?;
    }
    client.send(&Request::Eof).await?;
    Ok(())
}

/// What every data verb shows besides its data: per-engine errors on
/// stderr, the JSON document, a progress bar, the exit status.
struct View {
    json: bool,
    results: Vec<Value>,
    worst: i32,
    started: Instant,
    bar: Option<ProgressBar>,
    tty: bool,
}

impl View {
    fn new(json: bool) -> View {
        View {
            json,
            results: Vec::new(),
            worst: 0,
            started: Instant::now(),
            bar: None,
            tty: std::io::stderr().is_terminal(),
        }
    }

    fn progress(&mut self, done: u64, total: Option<u64>) {
        if !self.tty || self.started.elapsed() < BAR_DELAY {
            return;
        }
        let bar = self.bar.get_or_insert_with(|| {
            let (bar, template) = match total {
                Some(total) => (
                    ProgressBar::new(total),
                    "{bytes}/{total_bytes} [{wide_bar}] {binary_bytes_per_sec} ETA {eta}",
                ),
                None => (
                    ProgressBar::no_length(),
                    "{spinner} {bytes} {binary_bytes_per_sec} [{elapsed}]",
                ),
            };
            bar.set_style(ProgressStyle::with_template(template).expect("valid template"));
            bar
        });
        bar.set_position(done);
    }

    fn done(&mut self, done: EngineDone, extra: Value) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        if let Some(note) = &done.note {
            eprintln!("pcl: engine {} ({}): {note}", done.id, done.host);
        }
        self.worst = self.worst.max(done.status);
        if self.json {
            let mut result = json!({
                "id": done.id,
                "host": done.host,
                "status": done.status,
                "error": done.note,
            });
            if let (Value::Object(result), Value::Object(extra)) = (&mut result, extra) {
                result.extend(extra);
            }
            self.results.push(result);
        }
    }

    fn finish(self) -> anyhow::Result<ExitCode> {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
        if self.json {
            let mut out = std::io::stdout().lock();
            serde_json::to_writer(&mut out, &json!({ "results": self.results }))?;
            writeln!(out)?;
        }
        Ok(ExitCode::from(self.worst.clamp(0, 255) as u8))
    }
}
