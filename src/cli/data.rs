//! `push`, `pull`, `scatter`, `gather` on the CLI side: check the input
//! before anything is contacted, stream stdin when asked, render replies.
//!
//! Exit status: 0 when every target succeeded; 1 when an engine reported
//! an error (unset variable, missing file, full disk) or the request was
//! refused as a whole (no session, bad targets, unreadable local file); 2
//! for invalid input found before any engine was contacted (bad names,
//! bad remote paths, misused options); 130 when the call was aborted
//! (Ctrl-C, `pcl abort`); 255 when an engine could not be reached or was
//! lost mid-transfer. With several engines failing, the largest applies.
//!
//! Each verb is request building plus a `render_*` that prints replies,
//! live or replayed by `pcl result` from an `--async` job.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use serde_bytes::ByteBuf;
use serde_json::{Value, json};

use super::args::{GatherArgs, PullArgs, PushArgs, ScatterArgs};
use super::call::{Call, Replies, Stdin};
use super::data_view::View;
use super::exit::usage;
use super::render::prefixed;
use crate::protocol::data::{
    DataError, DataRequest, Items, Source, check_name, open_regular, split_assignment,
};
use crate::protocol::remote::{check_remote_template, literal};
use crate::protocol::session::{Reply, Request};
use crate::session::SessionPaths;
use crate::whole_file::WholeFile;

/// Exit status of an engine whose pulled file could not be written here.
const LOCAL_ERROR_STATUS: i32 = 1;

pub(super) async fn push(session: SessionPaths, args: PushArgs) -> anyhow::Result<ExitCode> {
    let request = push_request(&args);
    call(session, args.background, request, |replies| {
        render_push(args, replies)
    })
    .await
}

fn push_request(args: &PushArgs) -> anyhow::Result<DataRequest> {
    let Some(local) = &args.file else {
        let vars = args
            .args
            .iter()
            .map(|a| split_assignment(a.as_bytes()).map(|(n, v)| (n, ByteBuf::from(v))))
            .collect::<Result<_, DataError>>()
            .map_err(usage)?;
        return Ok(DataRequest::PushVars {
            targets: args.targets.clone(),
            vars,
        });
    };
    let stdin = local.as_os_str() == "-";
    let remote = match args.args.as_slice() {
        [] if stdin => return Err(usage("push --file - needs a REMOTE name")),
        // LOCAL's own name, braces and all.
        [] => match local.file_name() {
            Some(name) => literal(&name.to_string_lossy()),
            None => return Err(usage(format!("{} names no file", local.display()))),
        },
        [remote] => remote.to_string_lossy().into_owned(),
        _ => return Err(usage("push --file takes LOCAL and at most one REMOTE")),
    };
    check_remote_template(&remote).map_err(usage)?;
    Ok(DataRequest::PushFile {
        targets: args.targets.clone(),
        from: if stdin {
            Source::Stdin
        } else {
            Source::Path(readable(local)?)
        },
        remote,
    })
}

/// Print push replies, live or replayed from an async job.
pub(super) async fn render_push(args: PushArgs, replies: Replies) -> anyhow::Result<ExitCode> {
    render_stored(args.json, replies).await
}

pub(super) async fn pull(session: SessionPaths, args: PullArgs) -> anyhow::Result<ExitCode> {
    let request = pull_request(&args);
    call(session, args.background, request, |replies| {
        render_pull(args, replies)
    })
    .await
}

fn pull_request(args: &PullArgs) -> anyhow::Result<DataRequest> {
    if let Some(remote) = &args.file {
        check_remote_template(remote).map_err(usage)?;
        return Ok(DataRequest::PullFile {
            targets: args.targets.clone(),
            remote: remote.clone(),
            dest: std::path::absolute(args.dest.as_deref().unwrap_or(Path::new(".")))?,
        });
    }
    for name in &args.names {
        check_name(name).map_err(usage)?;
    }
    if args.raw && args.names.len() != 1 {
        return Err(usage("--raw prints exactly one variable of one engine"));
    }
    Ok(DataRequest::PullVars {
        targets: args.targets.clone(),
        names: args.names.clone(),
        single: args.raw,
    })
}

/// Print pull replies, live or replayed from an async job. Replaying an
/// async `pull --file` writes the files the session kept to where the
/// sync call would have written them (unless only the status is wanted).
pub(super) async fn render_pull(args: PullArgs, mut replies: Replies) -> anyhow::Result<ExitCode> {
    let mut view = View::new(args.json);
    if args.file.is_some() {
        let (mut path, mut from, mut unwritten) = (None, None, None);
        loop {
            match replies.next().await? {
                Reply::Transfer { done, total, all } => view.progress(done, total, all),
                Reply::Remark(remark) => view.remark(&remark),
                Reply::Pulled {
                    path: to,
                    kept,
                    from: by,
                    ..
                } => {
                    from = Some(by);
                    if let (Some(kept), true) = (kept, replies.writes_files()) {
                        unwritten = place(&kept, &to)
                            .err()
                            .map(|e| format!("cannot write {}: {e}", to.display()));
                    }
                    path = Some(to);
                }
                Reply::EngineDone(mut done) => {
                    if let Some(why) = unwritten.take() {
                        done.status = done.status.max(LOCAL_ERROR_STATUS);
                        done.note = Some(why);
                    }
                    let path = path.take().map(|p| p.display().to_string());
                    view.done(done, json!({ "path": path, "fetched_from": from.take() }));
                }
                Reply::Done => break,
                Reply::Error(e) => return view.error(e, &replies),
                other => bail!("unexpected reply {other:?}"),
            }
        }
        return view.finish(&replies);
    }
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
        match replies.next().await? {
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
            Reply::Error(e) => return view.error(e, &replies),
            other => bail!("unexpected reply {other:?}"),
        }
    }
    drop(stdout);
    view.finish(&replies)
}

/// Copy a file the session kept to `to`, through a temporary file in the
/// same directory renamed into place: never half a file at `to`.
fn place(kept: &Path, to: &Path) -> std::io::Result<()> {
    let (whole, mut file) = WholeFile::create(to)?;
    std::io::copy(&mut std::fs::File::open(kept)?, &mut file)?;
    drop(file);
    whole.commit()
}

pub(super) async fn scatter(session: SessionPaths, args: ScatterArgs) -> anyhow::Result<ExitCode> {
    let request = scatter_request(&args);
    call(session, args.background, request, |replies| {
        render_scatter(args, replies)
    })
    .await
}

fn scatter_request(args: &ScatterArgs) -> anyhow::Result<DataRequest> {
    let from = match &args.from {
        None => None,
        Some(f) if f == "-" => Some(Source::Stdin),
        Some(f) => Some(Source::Path(readable(Path::new(f))?)),
    };
    if let Some(remote) = &args.file {
        check_remote_template(remote).map_err(usage)?;
        if !args.args.is_empty() {
            return Err(usage(
                "scatter --file takes its lines from --from, not from arguments",
            ));
        }
        return Ok(DataRequest::ScatterFile {
            targets: args.targets.clone(),
            remote: remote.clone(),
            from: from.expect("clap requires --from with --file"),
        });
    }
    let Some((name, items)) = args.args.split_first() else {
        return Err(usage("scatter needs a NAME (or --file REMOTE)"));
    };
    let name = name.to_string_lossy().into_owned();
    check_name(&name).map_err(usage)?;
    let items = match (from, items.is_empty()) {
        (Some(source), true) => Items::Lines(source),
        (Some(_), false) => {
            return Err(usage("give items as arguments or with --from, not both"));
        }
        (None, _) => Items::Args(
            items
                .iter()
                .map(|i| ByteBuf::from(i.as_bytes().to_vec()))
                .collect(),
        ),
    };
    Ok(DataRequest::ScatterVar {
        targets: args.targets.clone(),
        name,
        items,
    })
}

/// Print scatter replies, live or replayed from an async job.
pub(super) async fn render_scatter(
    args: ScatterArgs,
    replies: Replies,
) -> anyhow::Result<ExitCode> {
    render_stored(args.json, replies).await
}

/// Push and scatter: a verdict per engine (and which engine wrote a
/// pushed file), nothing else.
async fn render_stored(json: bool, mut replies: Replies) -> anyhow::Result<ExitCode> {
    let mut view = View::new(json);
    let mut written_by = None;
    loop {
        match replies.next().await? {
            Reply::Transfer { done, total, all } => view.progress(done, total, all),
            Reply::WrittenBy { by, .. } => written_by = Some(by),
            Reply::Remark(remark) => view.remark(&remark),
            Reply::EngineDone(done) => {
                let extra = match written_by.take() {
                    Some(by) => json!({ "written_by": by }),
                    None => json!({}),
                };
                view.done(done, extra);
            }
            Reply::Done => break,
            Reply::Error(e) => return view.error(e, &replies),
            other => bail!("unexpected reply {other:?}"),
        }
    }
    view.finish(&replies)
}

pub(super) async fn gather(session: SessionPaths, args: GatherArgs) -> anyhow::Result<ExitCode> {
    let request = gather_request(&args);
    call(session, args.background, request, |replies| {
        render_gather(args, replies)
    })
    .await
}

fn gather_request(args: &GatherArgs) -> anyhow::Result<DataRequest> {
    match (&args.file, &args.name) {
        (Some(remote), _) => {
            check_remote_template(remote).map_err(usage)?;
            Ok(DataRequest::GatherFile {
                targets: args.targets.clone(),
                remote: remote.clone(),
            })
        }
        (None, Some(name)) => {
            check_name(name).map_err(usage)?;
            Ok(DataRequest::GatherVar {
                targets: args.targets.clone(),
                name: name.clone(),
            })
        }
        (None, None) => Err(usage("gather needs a NAME (or --file REMOTE)")),
    }
}

/// Print gather replies, live or replayed from an async job.
pub(super) async fn render_gather(
    args: GatherArgs,
    mut replies: Replies,
) -> anyhow::Result<ExitCode> {
    let array = args.file.is_none();
    let mut view = View::new(args.json);
    let mut stdout = std::io::stdout().lock();
    let (mut received, mut held) = (0u64, Vec::new());
    loop {
        match replies.next().await? {
            Reply::Output { mut data, .. } => {
                received += data.len() as u64;
                view.progress(received, None, None);
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
            Reply::Error(e) => {
                stdout.flush()?;
                return view.error(e, &replies);
            }
            other => bail!("unexpected reply {other:?}"),
        }
    }
    drop(stdout);
    view.finish(&replies)
}

/// One data call: a request that could not be built is refused (a usage
/// error exits 2, see `exit`); otherwise it goes out through the one call
/// path, with stdin after it when the request reads it.
async fn call<R: Future<Output = anyhow::Result<ExitCode>>>(
    session: SessionPaths,
    background: bool,
    request: anyhow::Result<DataRequest>,
    render: impl FnOnce(Replies) -> R,
) -> anyhow::Result<ExitCode> {
    let request = request?;
    let reads_stdin = matches!(
        &request,
        DataRequest::PushFile {
            from: Source::Stdin,
            ..
        } | DataRequest::ScatterFile {
            from: Source::Stdin,
            ..
        } | DataRequest::ScatterVar {
            items: Items::Lines(Source::Stdin),
            ..
        }
    );
    Call::new(session, Request::Data(request))
        .stdin(if reads_stdin {
            Stdin::Bytes
        } else {
            Stdin::None
        })
        .background(background)
        .run(render)
        .await
}

/// A local path the daemon will open itself: it must exist and be
/// readable now, and the daemon gets it absolute.
/// A regular file, because the daemon opens it by name on its own (a
/// `/dev/fd/N` would be the daemon's fd) and may read it twice (lines are
/// counted first): pipes go through `-`.
fn readable(path: &Path) -> anyhow::Result<PathBuf> {
    open_regular(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(std::path::absolute(path)?)
}
