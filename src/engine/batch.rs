//! `map`'s engine side: a batch of tasks run one after the other in one
//! engine's shell, each in a subshell, each answered as soon as it ends.
//! One request per batch (not per task), and one sourced script per batch
//! (bash reads a pipe a byte at a time, a file in blocks), is what makes
//! thousands of tiny tasks per second possible.

use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use memchr::memmem;

use quinn::SendStream;

use super::host::Engine;
use super::procs::signal_jobs;
use super::shell::random_hex;
use super::{Capture, EngineError, OutputSink, Shell, ansi_c_quote};
use crate::protocol::engine::{BatchItem, EngineReply, ExecEnd, ExecOutcome, TaskEnd};
use crate::transport::write_frame;

/// The command for one item: every `{}` becomes the shell-quoted item; with
/// no `{}`, the quoted item is appended after a space (GNU parallel's rule).
/// Like parallel, an item that needs no quoting is left bare, so it also
/// works where quotes mean something else (`$(( {} * 2 ))`).
///
/// A `{}` inside `"..."`, `'...'` or `$'...'` (GNU parallel users quote it
/// out of habit) gets that quote closed around the quoted item, so it still
/// stands for the item's exact bytes. Where bash would decode `$'...'` and
/// then expand the result again (arithmetic, `${...}`, array subscripts),
/// a quoted item goes in double-quoted, as text no expansion touches. The
/// scan knows quotes, backslashes, `$(...)`, `$((...))`, `((...))`,
/// `${...}`, subscripts, backticks and comments, not all of bash
/// (here-documents, `case` patterns): where it misjudges, the item comes
/// out garbled, never run, because the item's bytes go in only as `\xHH`
/// escapes or as the bare set.
pub fn substitute(template: &str, item: &[u8]) -> String {
    #[derive(Clone, Copy, PartialEq)]
    enum Quoting {
        /// Shell code: the top level, or `$(...)` with its open parens.
        Code(u32),
        Backtick,
        Comment,
        Double,
        Single,
        AnsiC,
        /// `$((...))` or `((...))`, with its open parens.
        Arith(u32),
        /// `${...}`, with its open braces.
        Param(u32),
        /// `name[...]` or `$[...]`, with its open brackets.
        Subscript(u32),
    }
    use Quoting::*;
    let bare = !item.is_empty()
        && item
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"_-.,/:+@%".contains(&b));
    let quoted = if bare {
        String::from_utf8_lossy(item).into_owned()
    } else {
        ansi_c_quote(item)
    };
    if !template.contains("{}") {
        return format!("{template} {quoted}");
    }
    let mut stack = vec![Code(0)];
    let mut out = String::with_capacity(template.len() + quoted.len());
    // The previous character was a backslash that escapes this one.
    let mut escaped = false;
    let mut word_start = true;
    let mut rest = template;
    while let Some(c) = rest.chars().next() {
        let here = *stack.last().expect("the top level is never popped");
        if let Some(after) = rest.strip_prefix("{}") {
            // Whether bash expands again what `$'...'` decodes to here.
            let reexpanded = stack
                .iter()
                .rev()
                .take_while(|q| !matches!(q, Code(_) | Backtick))
                .any(|q| matches!(q, Arith(_) | Param(_) | Subscript(_)));
            let inserted = match here {
                _ if bare => quoted.clone(),
                Code(_) | Backtick | Comment => quoted.clone(),
                Double if reexpanded => quoted.clone(),
                Double => format!("\"{quoted}\""),
                Single if reexpanded => format!("'\"{quoted}\"'"),
                Single => format!("'{quoted}'"),
                AnsiC if reexpanded => format!("'\"{quoted}\"$'"),
                AnsiC => format!("'{quoted}$'"),
                Arith(_) | Param(_) | Subscript(_) => format!("\"{quoted}\""),
            };
            // `"\{}"` means a backslash, then the item: doubled, the
            // backslash cannot escape the quote that closes the string.
            if escaped && inserted.starts_with(['"', '\'']) {
                out.push('\\');
            }
            out.push_str(&inserted);
            (rest, escaped, word_start) = (after, false, false);
            continue;
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
        if std::mem::take(&mut escaped) {
            word_start = false;
            continue;
        }
        // Characters that open something are taken along with `c`.
        let mut take = |opener: &str, into: Quoting, stack: &mut Vec<Quoting>| -> bool {
            match rest.strip_prefix(opener) {
                Some(after) => {
                    out.push_str(opener);
                    rest = after;
                    stack.push(into);
                    true
                }
                None => false,
            }
        };
        let opens_code = !matches!(here, Single | AnsiC | Comment);
        let opened = opens_code
            && match c {
                '$' => {
                    take("((", Arith(0), &mut stack)
                        || take("(", Code(0), &mut stack)
                        || take("{", Param(0), &mut stack)
                        || take("[", Subscript(0), &mut stack)
                        || (here != Double && take("'", AnsiC, &mut stack))
                }
                '(' if word_start && matches!(here, Code(_)) => take("(", Arith(0), &mut stack),
                _ => false,
            };
        if !opened {
            let nested = stack.len() > 1;
            let top = stack.last_mut().expect("the top level is never popped");
            match (here, c) {
                (Single, '\'') | (AnsiC, '\'') | (Double, '"') | (Comment, '\n') => {
                    stack.pop();
                }
                (Single | Comment, _) => {}
                (_, '\\') => escaped = true,
                (AnsiC, _) => {}
                (Backtick, '`') => {
                    stack.pop();
                }
                (_, '`') => stack.push(Backtick),
                (Double, _) => {}
                (_, '\'') => stack.push(Single),
                (_, '"') => stack.push(Double),
                (Code(_) | Backtick, '#') if word_start => stack.push(Comment),
                (Code(_), '[')
                    if out[..out.len() - 1]
                        .ends_with(|p: char| p.is_ascii_alphanumeric() || p == '_') =>
                {
                    stack.push(Subscript(0))
                }
                (Code(n), '(') => *top = Code(n + 1),
                (Code(0), ')') if nested => {
                    stack.pop();
                }
                (Code(n), ')') => *top = Code(n.saturating_sub(1)),
                (Arith(n), '(') => *top = Arith(n + 1),
                (Arith(0), ')') => {
                    // The first of the two that close it.
                    stack.pop();
                    if let Some(after) = rest.strip_prefix(')') {
                        out.push(')');
                        rest = after;
                    }
                }
                (Arith(n), ')') => *top = Arith(n - 1),
                (Param(n), '{') => *top = Param(n + 1),
                (Param(0), '}') | (Subscript(0), ']') => {
                    stack.pop();
                }
                (Param(n), '}') => *top = Param(n - 1),
                (Subscript(n), '[') => *top = Subscript(n + 1),
                (Subscript(n), ']') => *top = Subscript(n - 1),
                _ => {}
            }
        }
        word_start = c.is_whitespace() || ";&|()<>".contains(c);
    }
    out
}

/// SIGINT the engine's running command. Reads only the pid atomic, so it
/// works while a command holds the shell's lock.
pub(super) fn interrupt(engine: &Engine, id: u32, cancel: bool) {
    if cancel {
        engine.cancel.fetch_add(1, Ordering::SeqCst);
        let _ = std::fs::write(stop_file(id), b"");
    }
    signal_jobs(engine.pid.load(Ordering::SeqCst), libc::SIGINT);
}

/// A private directory for batch scripts, removed when the host exits.
pub(super) fn scratch_dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("pcl-engine-{}", std::process::id()));
        let _ = std::fs::DirBuilder::new()
            .mode(0o700)
            .recursive(true)
            .create(&dir);
        dir
    })
}

/// How often a batch's output is read (see `OutputSink::poll_every`): a
/// tiny task takes about a millisecond.
const POLL_EVERY: Duration = Duration::from_millis(2);

/// Its presence stops engine `id`'s running batch before its next task.
fn stop_file(id: u32) -> PathBuf {
    scratch_dir().join(format!("stop-{id}"))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub(super) async fn run_batch(
    engine: &Engine,
    id: u32,
    template: &str,
    items: Vec<BatchItem>,
    timeout: Option<Duration>,
    send: &mut SendStream,
) -> Result<(), EngineError> {
    // Read before queueing for the lock: a cancel sent while this batch
    // waits behind another one stops it too.
    let epoch = engine.cancel.load(Ordering::SeqCst);
    let mut shell = engine.shell.lock().await;
    let _ = std::fs::remove_file(stop_file(id));
    if engine.cancel.load(Ordering::SeqCst) == epoch {
        match timeout {
            Some(t) => run_each(engine, &mut shell, epoch, template, items, t, send).await?,
            None => run_sourced(&mut shell, id, template, items, send).await?,
        }
        engine.pid.store(shell.pid(), Ordering::SeqCst);
    }
    write_frame(send, &EngineReply::BatchDone).await?;
    Ok(())
}

/// The command for one task: a subshell sees the engine's variables,
/// functions and cwd but cannot change them for the next task. Stdin is
/// already /dev/null: `run_script` redirects the whole script.
fn task_script(template: &str, item: &[u8]) -> String {
    let command = substitute(template, item);
    format!("( builtin eval {} )", ansi_c_quote(command.as_bytes()))
}

/// With a per-task timeout: one shell call per task, each with its own
/// deadline.
async fn run_each(
    engine: &Engine,
    shell: &mut Shell,
    epoch: u64,
    template: &str,
    items: Vec<BatchItem>,
    timeout: Duration,
    send: &mut SendStream,
) -> Result<(), EngineError> {
    for BatchItem { seq, item } in items {
        if engine.cancel.load(Ordering::SeqCst) != epoch {
            break;
        }
        let mut capture = Capture::default();
        let start_ms = now_ms();
        let started = Instant::now();
        let end = shell
            .run_script(&task_script(template, &item), Some(timeout), &mut capture)
            .await;
        engine.pid.store(shell.pid(), Ordering::SeqCst);
        let end = end.unwrap_or_else(|e| ExecEnd {
            status: 255,
            outcome: ExecOutcome::ShellRestarted(e.to_string()),
        });
        let task = TaskEnd {
            seq,
            start_ms,
            runtime_ms: started.elapsed().as_millis() as u64,
            end,
            stdout: capture.stdout,
            stderr: capture.stderr,
        };
        write_frame(send, &EngineReply::Task(task)).await?;
    }
    Ok(())
}

/// Without a timeout: the batch runs as one loop in the shell, sourced
/// from a file (bash reads a pipe a byte at a time, a file in blocks),
/// each task answered by a marker on stdout and stderr. Results are cut
/// out of the streams and sent as they complete.
async fn run_sourced(
    shell: &mut Shell,
    id: u32,
    template: &str,
    items: Vec<BatchItem>,
    send: &mut SendStream,
) -> Result<(), EngineError> {
    let token = random_hex();
    let (a, b) = token.split_at(token.len() / 2);
    let quote = |path: &PathBuf| ansi_c_quote(path.as_os_str().as_encoded_bytes());
    let stop = quote(&stop_file(id));
    // One loop in the shell runs the batch, its stdin /dev/null once for
    // all tasks. Each task's marker is printed from two variables so
    // `set -x` never shows it; once the stop file appears, one marker with
    // status `x` ends the batch. With job control on, a SIGINT reaches only
    // the task's process group, but bash breaks a loop whose foreground
    // job died of SIGINT: the task turns it into exit status 130.
    let mut script = format!(
        "__pcl_m={a}; __pcl_n={b}\n\
         __pcl_r() {{ for __pcl_c in \"${{__pcl_l[@]}}\"; do [[ -e {stop} ]] && break; \
         ( trap 'exit 130' INT; builtin eval \"$__pcl_c\" ); \
         builtin printf '%s%s%s\\n' \"$__pcl_m\" \"$__pcl_n\" \"$?\"; \
         builtin printf '%s%s' \"$__pcl_m\" \"$__pcl_n\" >&2; done; \
         [[ -e {stop} ]] && {{ builtin printf '%s%s%s\\n' \"$__pcl_m\" \"$__pcl_n\" x; \
         builtin printf '%s%s' \"$__pcl_m\" \"$__pcl_n\" >&2; }}; unset __pcl_l __pcl_c; }}\n\
         __pcl_l=("
    );
    for BatchItem { item, .. } in &items {
        script.push_str(&ansi_c_quote(substitute(template, item).as_bytes()));
        script.push(' ');
    }
    script.push_str(")\n");
    let path = scratch_dir().join(format!("batch-{id}.sh"));
    std::fs::write(&path, script)?;
    let lines = format!(". {} </dev/null; __pcl_r </dev/null\n", quote(&path));
    let mut splitter = Splitter {
        token: token.into_bytes(),
        items: items.into_iter().map(|i| i.seq).collect(),
        next: 0,
        stdout: Cut::default(),
        stderr: Cut::default(),
        done_out: Vec::new(),
        started: Instant::now(),
        start_ms: now_ms(),
        send,
        failed: None,
        cancelled: false,
    };
    let end = shell.run_lines(&lines, None, &mut splitter).await;
    let _ = std::fs::remove_file(&path);
    if let Some(e) = splitter.failed.take() {
        return Err(e);
    }
    // The shell died mid-task: that task ends with what it printed.
    if let Ok(
        end @ ExecEnd {
            outcome: ExecOutcome::ShellRestarted(_),
            ..
        },
    ) = end
    {
        if let Some(&seq) = splitter.items.get(splitter.next) {
            let task = TaskEnd {
                seq,
                start_ms: splitter.start_ms,
                runtime_ms: splitter.started.elapsed().as_millis() as u64,
                end,
                stdout: std::mem::take(&mut splitter.stdout.buf),
                stderr: std::mem::take(&mut splitter.stderr.buf),
            };
            write_frame(splitter.send, &EngineReply::Task(task)).await?;
        }
    }
    Ok(())
}

/// One stream of a batch, cut at the task markers.
#[derive(Default)]
struct Cut {
    buf: Vec<u8>,
    /// How far `buf` is known to hold no marker.
    searched: usize,
}

impl Cut {
    /// The next task's bytes and, with `line`, the rest of the marker's
    /// line (the status), once complete.
    fn next(&mut self, token: &[u8], line: bool) -> Option<(Vec<u8>, Vec<u8>)> {
        let from = self.searched.saturating_sub(token.len());
        let Some(at) = memmem::find(&self.buf[from..], token).map(|i| i + from) else {
            self.searched = self.buf.len();
            return None;
        };
        let after = at + token.len();
        let (tail, consumed) = if line {
            let nl = memchr::memchr(b'\n', &self.buf[after..])?;
            (self.buf[after..after + nl].to_vec(), after + nl + 1)
        } else {
            (Vec::new(), after)
        };
        let rest = self.buf.split_off(consumed);
        let mut task = std::mem::replace(&mut self.buf, rest);
        task.truncate(at);
        self.searched = 0;
        Some((task, tail))
    }
}

struct Splitter<'a> {
    token: Vec<u8>,
    items: Vec<u64>,
    /// Index in `items` of the task running now.
    next: usize,
    stdout: Cut,
    stderr: Cut,
    /// Finished stdouts (with status; none if cancelled) waiting for their
    /// stderr's marker.
    done_out: Vec<(Vec<u8>, Option<i32>)>,
    started: Instant,
    start_ms: u64,
    send: &'a mut SendStream,
    failed: Option<EngineError>,
    /// A task was skipped by a cancel: report nothing more.
    cancelled: bool,
}

impl Splitter<'_> {
    async fn emit(&mut self) {
        while !self.done_out.is_empty() && !self.cancelled {
            let Some((stderr, _)) = self.stderr.next(&self.token, false) else {
                return;
            };
            let (stdout, status) = self.done_out.remove(0);
            let Some(&seq) = self.items.get(self.next) else {
                return;
            };
            let Some(status) = status else {
                self.cancelled = true;
                return;
            };
            self.next += 1;
            let task = TaskEnd {
                seq,
                start_ms: self.start_ms,
                runtime_ms: self.started.elapsed().as_millis() as u64,
                end: ExecEnd {
                    status,
                    outcome: ExecOutcome::Finished,
                },
                stdout,
                stderr,
            };
            self.started = Instant::now();
            self.start_ms = now_ms();
            if let Err(e) = write_frame(self.send, &EngineReply::Task(task)).await {
                self.failed.get_or_insert(e.into());
            }
        }
    }
}

impl OutputSink for Splitter<'_> {
    async fn stdout(&mut self, data: Vec<u8>) {
        self.stdout.buf.extend_from_slice(&data);
        while let Some((out, status)) = self.stdout.next(&self.token, true) {
            let status = std::str::from_utf8(&status)
                .ok()
                .and_then(|s| s.parse().ok());
            self.done_out.push((out, status));
        }
        self.emit().await;
    }

    async fn stderr(&mut self, data: Vec<u8>) {
        self.stderr.buf.extend_from_slice(&data);
        self.emit().await;
    }

    /// Not for the last task: the next batch waits for this one's end.
    fn poll_every(&self) -> Option<Duration> {
        (self.next + self.done_out.len() + 1 < self.items.len()).then_some(POLL_EVERY)
    }
}

#[cfg(test)]
mod tests {
    use super::{Cut, substitute};

    #[test]
    fn cuts_tasks_at_markers_split_across_reads() {
        let mut cut = Cut::default();
        cut.buf.extend_from_slice(b"one\nMA");
        assert!(cut.next(b"MARK", true).is_none());
        cut.buf.extend_from_slice(b"RK0");
        assert!(cut.next(b"MARK", true).is_none());
        cut.buf.extend_from_slice(b"\nMARK3\nrest");
        assert_eq!(
            cut.next(b"MARK", true),
            Some((b"one\n".to_vec(), b"0".to_vec()))
        );
        assert_eq!(cut.next(b"MARK", true), Some((Vec::new(), b"3".to_vec())));
        assert_eq!(cut.buf, b"rest");
    }

    #[test]
    fn braces_become_the_quoted_item() {
        assert_eq!(substitute("echo {} {}", b"a b"), "echo $'a b' $'a b'");
        assert_eq!(substitute("echo", b"x"), "echo x");
        assert_eq!(
            substitute("echo $(( {} * 2 ))", b"21"),
            "echo $(( 21 * 2 ))"
        );
        assert_eq!(substitute("echo {}", b""), "echo $''");
        assert_eq!(substitute("echo {}", b"*"), "echo $'\\x2a'");
        assert_eq!(
            substitute("echo {}", b"$(touch x)'\""),
            "echo $'\\x24\\x28touch x\\x29\\x27\\x22'"
        );
    }

    #[test]
    fn a_quoted_placeholder_has_its_quote_closed_around_the_item() {
        let item = b"$(touch x)";
        let q = "$'\\x24\\x28touch x\\x29'";
        let cases = [
            ("echo \"{}\"", format!("echo \"\"{q}\"\"")),
            ("echo '{}'", format!("echo ''{q}''")),
            ("echo $'{}'", format!("echo $''{q}$''")),
            ("echo \"a{}b\" {}", format!("echo \"a\"{q}\"b\" {q}")),
            ("echo \"$(f {})\"", format!("echo \"$(f {q})\"")),
            ("echo \"`f {}`\"", format!("echo \"`f {q}`\"")),
            ("echo \"\\{}\"", format!("echo \"\\\\\"{q}\"\"")),
            ("echo {} # it's \"{}\"", format!("echo {q} # it's \"{q}\"")),
        ];
        for (template, want) in cases {
            assert_eq!(substitute(template, item), want, "{template}");
        }
        // A bare item needs no closing of anything.
        assert_eq!(substitute("echo \"{}\" '{}'", b"a1"), "echo \"a1\" 'a1'");
    }

    /// What bash makes of `template` with `item` substituted, run in `dir`.
    fn bash(dir: &std::path::Path, template: &str, item: &[u8]) -> Vec<u8> {
        std::process::Command::new("bash")
            .args(["--noprofile", "--norc", "-c", &substitute(template, item)])
            .current_dir(dir)
            .stderr(std::process::Stdio::null())
            .output()
            .expect("bash runs")
            .stdout
    }

    const HOSTILE: &[u8] = b"$(touch a) `touch b`;touch c' \"$(touch d)\"\\\n*x";

    #[test]
    fn every_handled_quoting_gives_the_exact_bytes() {
        let dir = tempfile::tempdir().unwrap();
        for template in [
            "printf %s {}",
            "printf %s \"{}\"",
            "printf %s '{}'",
            "printf %s $'{}'",
            "printf %s \"$(printf %s \"{}\")\"",
            "printf %s \"$(printf %s '{}')\"",
            "printf %s \"`printf %s {}`\"",
            "printf %s {} # it's \"{}\"",
        ] {
            for item in [HOSTILE, b"", b"plain-1.0"] {
                assert_eq!(bash(dir.path(), template, item), item, "{template}");
            }
        }
        assert_eq!(bash(dir.path(), "printf %s \"<{}>\"", b"a b"), b"<a b>");
        assert_eq!(bash(dir.path(), "printf %s \"\\{}\"", b"a b"), b"\\a b");
        assert_eq!(bash(dir.path(), "printf %s $'\\{}'", b"a b"), b"\\a b");
        assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());
    }

    #[test]
    fn where_bash_expands_twice_the_item_goes_in_double_quoted() {
        let q = "$'\\x2a'";
        let cases = [
            ("echo $(( {} ))", format!("echo $(( \"{q}\" ))")),
            ("(( x = {} ))", format!("(( x = \"{q}\" ))")),
            (
                "echo ${a[{}]} ${#a[@]}",
                format!("echo ${{a[\"{q}\"]}} ${{#a[@]}}"),
            ),
            ("a[{}]=1", format!("a[\"{q}\"]=1")),
            (
                "echo \"$(( '{}' ))\"",
                format!("echo \"$(( ''\"{q}\"'' ))\""),
            ),
            ("echo $(( \"{}\" )) {}", format!("echo $(( \"{q}\" )) {q}")),
        ];
        for (template, want) in cases {
            assert_eq!(substitute(template, b"*"), want, "{template}");
        }
        assert_eq!(
            substitute("echo $(( {} * 2 ))", b"21"),
            "echo $(( 21 * 2 ))"
        );
    }

    #[test]
    fn no_quoting_lets_an_item_run() {
        let dir = tempfile::tempdir().unwrap();
        for template in [
            "echo {} \"{}\" '{}' $'{}' \"a{}b\"",
            "cat <<EOF\n{}\nEOF",
            "cat <<'EOF'\n\"{}\"\nEOF",
            "echo ${x:-{}} \"${x:-{}}\" \"${x:-'{}'}\" ${x:-\"{}\"}",
            "x=1; echo ${x:0:{}} ${x:{}} \"${x:0:{}}\" ${x:0:'{}'}",
            "echo ${a[{}]} \"${a[{}]}\" ${a['{}']} ${a[\"{}\"]} ${a[$'{}']}",
            "a[{}]=1; a[\"{}\"]=1; a['{}']=1; a[$'{}']=1",
            "echo $(case a in a) echo \"{}\";; esac)",
            "echo \\{} \"\\\\{}\" '\\{}' $'\\'{} $'\\{}' \"\\{}\"",
            "echo $(( {} )) \"$(( {} ))\" $(( \"{}\" )) $(( '{}' )) $(( $'{}' ))",
            "echo \"$(( \"{}\" ))\" \"$(( '{}' ))\" \"$(( $'{}' ))\" $(( \\{} ))",
            "(( {} )); (( \"{}\" )); (( '{}' )); (( $'{}' )); echo $[ {} ]",
            "echo $(( 1 + $(echo {}) )) $(( a[{}] ))",
            "echo \"$(echo \")\" {}\"",
            "echo '{}\" {} \"{}'",
            "f() { echo \"{}\"; }; f",
            "echo \"`echo \\\"{}\\\"`\"",
            "echo {} # it's {}\necho \"{}\"",
        ] {
            bash(dir.path(), template, HOSTILE);
            let made: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
            assert!(made.is_empty(), "{template}: the item ran: {made:?}");
        }
    }
}
