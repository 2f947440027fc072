use std::io::Write;
use std::process::ExitCode;

use anyhow::bail;

use super::args::PxArgs;
use super::call::{Call, Replies};
use super::exit;
use super::render::{EngineResult, grouped, note, prefixed};
use crate::protocol::session::{Reply, Request, Stream};
use crate::protocol::status::INTERRUPTED;
use crate::protocol::verbs::PxRequest;
use crate::session::SessionPaths;

pub(super) async fn run(session: SessionPaths, args: PxArgs) -> anyhow::Result<ExitCode> {
    let timeout_ms = args.timeout;
    let request = Request::Px(PxRequest {
        targets: args.targets.clone(),
        command: args.command.join(" "),
        timeout_ms,
    });
    Call::new(session, request)
        .background(args.background)
        .run(|replies| render(args, replies))
        .await
}

/// Print px replies, live or replayed from an async job.
pub(super) async fn render(args: PxArgs, mut replies: Replies) -> anyhow::Result<ExitCode> {
    let mut stdout = std::io::stdout().lock();
    let mut results = Vec::new();
    let (mut out_buf, mut err_buf) = (Vec::new(), Vec::new());
    let mut worst = 0;
    loop {
        match replies.next().await? {
            Reply::Output { stream, data, .. } => match stream {
                // Raw stdout streams straight through: nothing to hold.
                Stream::Stdout if args.raw => stdout.write_all(&data)?,
                Stream::Stdout => out_buf.extend(data),
                Stream::Stderr => err_buf.extend(data),
            },
            Reply::EngineDone(done) => {
                let result = EngineResult {
                    id: done.id,
                    host: done.host,
                    status: done.status,
                    stdout: std::mem::take(&mut out_buf),
                    stderr: std::mem::take(&mut err_buf),
                    note: done.note,
                };
                worst = worst.max(result.status);
                if !(args.json || args.gather) {
                    prefixed(
                        &mut stdout,
                        &format!("[stdout:{}] ", result.id),
                        &result.stdout,
                    )?;
                    stdout.flush()?;
                    prefixed(
                        &mut std::io::stderr().lock(),
                        &format!("[stderr:{}] ", result.id),
                        &result.stderr,
                    )?;
                    note(&result);
                } else {
                    results.push(result);
                }
            }
            Reply::Done => break,
            Reply::Error(e) => bail!(e),
            other => bail!("unexpected reply {other:?}"),
        }
    }
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
