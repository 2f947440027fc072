//! What every data verb shows besides its data: per-engine verdicts and
//! errors on stderr, the `--json` document, a progress bar for long
//! transfers, and the exit status.

use std::fmt;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::bail;
use indicatif::{
    BinaryBytes, HumanDuration, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle,
};
use serde_json::{Value, json};

use super::call::Replies;
use super::exit;
use crate::protocol::session::EngineDone;
use crate::protocol::status::INTERRUPTED;

/// Transfers shorter than this show no progress bar.
const BAR_DELAY: Duration = Duration::from_secs(1);

/// Bytes and rate; with a known total, also how far and the ETA. The rate
/// is the average since the bytes began to move, as scp and curl show it:
/// a bar that appears a second in has no instant rate of its own yet.
fn transfer_style(total: Option<u64>) -> ProgressStyle {
    let template = match total {
        Some(_) => "{bytes}/{total_bytes} [{wide_bar}] {average}/s ETA {time_left}{msg}",
        None => "{spinner} {bytes} {average}/s [{elapsed}]",
    };
    let per_sec =
        |state: &ProgressState| state.pos() as f64 / state.elapsed().as_secs_f64().max(1e-3);
    ProgressStyle::with_template(template)
        .expect("valid template")
        .with_key(
            "average",
            move |state: &ProgressState, w: &mut dyn fmt::Write| {
                let _ = write!(w, "{}", BinaryBytes(per_sec(state) as u64));
            },
        )
        .with_key(
            "time_left",
            move |state: &ProgressState, w: &mut dyn fmt::Write| {
                let left = state.len().unwrap_or(0).saturating_sub(state.pos()) as f64;
                let secs = left / per_sec(state).max(1.0);
                let _ = write!(w, "{:#}", HumanDuration(Duration::from_secs_f64(secs)));
            },
        )
}

/// What every data verb shows besides its data: per-engine errors on
/// stderr, the JSON document, a progress bar, the exit status.
pub(super) struct View {
    json: bool,
    results: Vec<Value>,
    worst: i32,
    started: Instant,
    bar: Option<ProgressBar>,
    /// When the bytes the bar counts began to move, and when the last
    /// count came: a push from stdin first reads it, then sends it.
    phase_started: Instant,
    last_count: Instant,
    tty: bool,
}

impl View {
    pub(super) fn new(json: bool) -> View {
        View {
            json,
            results: Vec::new(),
            worst: 0,
            started: Instant::now(),
            bar: None,
            phase_started: Instant::now(),
            last_count: Instant::now(),
            tty: std::io::stderr().is_terminal(),
        }
    }

    /// `done` bytes of `total`; `all`: every destination's bytes together,
    /// shown as their aggregate rate beside the slowest one's.
    pub(super) fn progress(&mut self, done: u64, total: Option<u64>, all: Option<u64>) {
        let now = Instant::now();
        let previous = std::mem::replace(&mut self.last_count, now);
        if !self.tty || now - self.started < BAR_DELAY {
            return;
        }
        // The reading of stdin is over: the sending began about when its
        // last count came.
        if let Some(bar) = self
            .bar
            .take_if(|bar| total.is_some() && bar.length().is_none())
        {
            bar.finish_and_clear();
            self.phase_started = previous;
        }
        let phase = now - self.phase_started;
        let bar = self.bar.get_or_insert_with(|| {
            ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr())
                .with_style(transfer_style(total))
                .with_elapsed(phase)
        });
        bar.set_position(done);
        if let Some(all) = all {
            let rate = all as f64 / phase.as_secs_f64().max(1e-3);
            bar.set_message(format!(", all hosts {}/s", BinaryBytes(rate as u64)));
        }
    }

    /// pcl's word on the call as a whole, on stderr.
    pub(super) fn remark(&mut self, remark: &str) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        eprintln!("pcl: {remark}");
    }

    pub(super) fn done(&mut self, done: EngineDone, extra: Value) {
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

    /// The exit status: the worst engine's, or 130 after Ctrl-C.
    pub(super) fn finish(self, replies: &Replies) -> anyhow::Result<ExitCode> {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
        if self.json {
            let mut out = std::io::stdout().lock();
            serde_json::to_writer(&mut out, &json!({ "results": self.results }))?;
            writeln!(out)?;
        }
        if replies.interrupted() {
            return Ok(exit::code(INTERRUPTED));
        }
        Ok(exit::code(self.worst))
    }

    /// The call failed as a whole; after Ctrl-C that is the abort's doing.
    pub(super) fn error(self, e: String, replies: &Replies) -> anyhow::Result<ExitCode> {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
        if replies.interrupted() {
            eprintln!("pcl: {e}");
            return Ok(exit::code(INTERRUPTED));
        }
        bail!(e)
    }
}
