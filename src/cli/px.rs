//! `pcl px` on the CLI side: the request, and its output as the user sees
//! it: live lines (a terminal, `--stream`), engine order (a pipe), or whole
//! outputs (`-b`, `--raw`, `--json`).

use std::collections::BTreeSet;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::args::PxArgs;
use super::call::{Call, Replies};
use super::exit;
use super::live::Lines;
use super::render::{EngineResult, grouped, note, prefixed};
use crate::protocol::session::{Reply, Request, Stream};
use crate::protocol::status::INTERRUPTED;
use crate::protocol::verbs::PxRequest;
use crate::session::{SessionPaths, fold_ids};

/// Streaming, a line still without its newline past this goes out in
/// pieces, each prefixed.
const MAX_LINE: usize = 64 << 10;

/// How long a px runs before its footer shows.
const FOOTER_DELAY: Duration = Duration::from_secs(1);

pub(super) async fn run(session: SessionPaths, args: PxArgs) -> anyhow::Result<ExitCode> {
    call(session, args, false).await
}

/// A px of the console's: Ctrl-C interrupts it, and the console stays.
pub(super) async fn run_in_console(
    session: SessionPaths,
    args: PxArgs,
) -> anyhow::Result<ExitCode> {
    call(session, args, true).await
}

async fn call(session: SessionPaths, args: PxArgs, keep_running: bool) -> anyhow::Result<ExitCode> {
    let request = Request::Px(PxRequest {
        targets: args.targets.clone(),
        command: args.command.join(" "),
        timeout_ms: args.timeout,
        // A job's output is shown later, by `pcl result`, in engine order.
        stream: !args.background && streams(&args),
    });
    let call = Call::new(session, request).background(args.background);
    let call = if keep_running {
        call.keep_running()
    } else {
        call
    };
    call.run(|replies| render(args, replies)).await
}

/// Lines as they come, engines interleaved: on a terminal unless
/// `--no-stream`, or with `--stream`; never where whole outputs are needed.
fn streams(args: &PxArgs) -> bool {
    if args.raw || args.json || args.gather || args.no_stream {
        return false;
    }
    args.stream || std::io::stdout().is_terminal()
}

/// Print px replies, live or replayed from an async job.
pub(super) async fn render(args: PxArgs, mut replies: Replies) -> anyhow::Result<ExitCode> {
    let whole = args.json || args.gather;
    let mut stdout = std::io::stdout().lock();
    let mut lines = Lines::new(streams(&args).then_some(MAX_LINE));
    let footer = Footer::new();
    let mut results = Vec::new();
    let (mut out_buf, mut err_buf) = (Vec::new(), Vec::new());
    let mut worst = 0;
    loop {
        match replies.next().await? {
            Reply::Targets(ids) => footer.targets(ids),
            Reply::Finished(id) => footer.finished(id),
            Reply::Output { id, stream, data } => match stream {
                // Raw stdout streams straight through: nothing to hold.
                Stream::Stdout if args.raw => footer.suspend(|| stdout.write_all(&data))?,
                Stream::Stdout if whole => out_buf.extend(data),
                Stream::Stderr if whole => err_buf.extend(data),
                Stream::Stdout => {
                    footer.suspend(|| lines.feed(&mut stdout, id, stream, &data))?;
                }
                Stream::Stderr => footer.suspend(|| {
                    stdout.flush()?;
                    lines.feed(&mut std::io::stderr().lock(), id, stream, &data)
                })?,
            },
            Reply::EngineDone(done) => {
                worst = worst.max(done.status);
                let result = EngineResult {
                    id: done.id,
                    host: done.host,
                    status: done.status,
                    stdout: std::mem::take(&mut out_buf),
                    stderr: std::mem::take(&mut err_buf),
                    note: done.note,
                };
                if whole {
                    results.push(result);
                    continue;
                }
                footer.suspend(|| {
                    lines.finish(&mut stdout, result.id, Stream::Stdout)?;
                    stdout.flush()?;
                    lines.finish(&mut std::io::stderr().lock(), result.id, Stream::Stderr)?;
                    note(&result);
                    Ok(())
                })?;
            }
            Reply::Done => break,
            Reply::Error(e) => bail!(e),
            other => bail!("unexpected reply {other:?}"),
        }
    }
    footer.clear();
    if args.json {
        serde_json::to_writer(&mut stdout, &serde_json::json!({ "results": results }))?;
        writeln!(stdout)?;
    } else if args.gather {
        grouped(&mut stdout, &results)?;
        for r in &results {
            prefixed(
                &mut std::io::stderr().lock(),
                &format!("[stderr:{}] ", r.id),
                &r.stderr,
            )?;
            note(r);
        }
    }
    stdout.flush()?;
    if replies.interrupted() {
        return Ok(exit::code(INTERRUPTED));
    }
    Ok(exit::code(worst))
}

/// One line under the output on a terminal, after a second: how many
/// engines finished, which still run. Output lines are printed around it,
/// never into it; in a pipe there is none.
struct Footer {
    bar: Option<ProgressBar>,
    state: std::sync::Mutex<(Vec<u32>, BTreeSet<u32>)>,
}

impl Footer {
    fn new() -> Footer {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden());
            bar.set_style(ProgressStyle::with_template("{msg}").expect("valid template"));
            let shown = bar.clone();
            tokio::spawn(async move {
                tokio::time::sleep(FOOTER_DELAY).await;
                if !shown.is_finished() {
                    shown.set_draw_target(ProgressDrawTarget::stderr());
                    shown.enable_steady_tick(Duration::from_millis(200));
                }
            });
            bar
        });
        Footer {
            bar,
            state: Default::default(),
        }
    }

    fn targets(&self, ids: Vec<u32>) {
        self.state.lock().expect("footer lock").0 = ids;
        self.redraw();
    }

    fn finished(&self, id: u32) {
        self.state.lock().expect("footer lock").1.insert(id);
        self.redraw();
    }

    fn redraw(&self) {
        let Some(bar) = &self.bar else { return };
        let (ids, done) = &*self.state.lock().expect("footer lock");
        let running: Vec<u32> = ids
            .iter()
            .copied()
            .filter(|id| !done.contains(id))
            .collect();
        bar.set_message(format!(
            "px: {}/{} engines finished; running: {}",
            done.len(),
            ids.len(),
            fold_ids(&running)
        ));
    }

    fn suspend<T>(&self, print: impl FnOnce() -> std::io::Result<T>) -> std::io::Result<T> {
        match &self.bar {
            Some(bar) => bar.suspend(print),
            None => print(),
        }
    }

    fn clear(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
