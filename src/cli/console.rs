//! `pcl console`: an interactive prompt, as clush's interactive mode or
//! IPython's `%autopx`: each line runs on the targets as a streamed px.
//! Lines starting with `:` are the console's own (`:targets T`, `:status`,
//! `:help`, `:quit`); a line ending in `\` goes on on the next. Ctrl-C
//! interrupts the running command and comes back to the prompt; Ctrl-D
//! (or `:quit`) leaves. History is kept in the session's directory.

use std::process::ExitCode;

use rustyline::DefaultEditor;
use rustyline::error::ReadlineError;

use super::args::PxArgs;
use super::targets::targets_arg;
use super::{px, session_cmds};
use crate::protocol::status;
use crate::session::SessionPaths;

const HELP: &str = "\
Each line runs in the shells of the target engines, as `pcl px` with its
output live. A line ending in \\ goes on on the next.
  :targets T   run on T from now on: all, ids 0,2,5-7, hosts node[01-04]
  :status      every engine's state (pcl status)
  :help        this text
  :quit        leave (or Ctrl-D); Ctrl-C interrupts the running command";

pub(super) fn run(session: SessionPaths, targets: String) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // No session, no console: say so now rather than at the first line.
    runtime.block_on(super::call::connect(&session))?;
    let mut editor = DefaultEditor::new()?;
    let history = session.dir.join("console_history");
    let _ = editor.load_history(&history);
    let mut targets = targets;
    let mut last = status::SUCCESS;
    loop {
        let Some(line) = read_command(&mut editor, &targets, last)? else {
            break;
        };
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let _ = editor.add_history_entry(line);
        match line.split_once(' ').unwrap_or((line, "")) {
            (":quit" | ":q", _) => break,
            (":help" | ":h", _) => println!("{HELP}"),
            (":targets" | ":t", new) => match targets_arg(new.trim()) {
                Ok(new) => targets = new.trim().to_string(),
                Err(why) => eprintln!("pcl: {why}"),
            },
            (":status", _) => {
                last = outcome(runtime.block_on(session_cmds::status(session.clone(), false)));
            }
            (command, _) if command.starts_with(':') => {
                eprintln!("pcl: no console command {command}; :help lists them");
            }
            _ => {
                let args = PxArgs {
                    targets: targets.clone(),
                    timeout: None,
                    gather: false,
                    raw: false,
                    json: false,
                    background: false,
                    stream: true,
                    no_stream: false,
                    command: vec![line.to_string()],
                };
                last = outcome(runtime.block_on(px::run_in_console(session.clone(), args)));
            }
        }
    }
    let _ = editor.save_history(&history);
    Ok(ExitCode::SUCCESS)
}

/// One command, its continued lines joined; `None` at Ctrl-D.
fn read_command(
    editor: &mut DefaultEditor,
    targets: &str,
    last: i32,
) -> anyhow::Result<Option<String>> {
    let mut command = String::new();
    loop {
        let prompt = if command.is_empty() {
            format!("pcl [{targets}] {last}> ")
        } else {
            "... ".to_string()
        };
        match editor.readline(&prompt) {
            // As in a shell, backslash-newline joins the lines.
            Ok(line) => match line.strip_suffix('\\') {
                Some(part) => command.push_str(part),
                None => {
                    command.push_str(&line);
                    return Ok(Some(command));
                }
            },
            // Ctrl-C at the prompt drops what was typed, as in a shell.
            Err(ReadlineError::Interrupted) => command.clear(),
            Err(ReadlineError::Eof) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    }
}

/// The status a command ended with, for the next prompt; an error is
/// said and counts as a failure, and the console goes on.
fn outcome(result: anyhow::Result<ExitCode>) -> i32 {
    match result {
        Ok(code) if code == ExitCode::SUCCESS => status::SUCCESS,
        Ok(code) => exit_status(code),
        Err(e) => {
            eprintln!("pcl: {e:#}");
            status::FAILURE
        }
    }
}

/// `ExitCode` does not say its number; the statuses a px gives do.
fn exit_status(code: ExitCode) -> i32 {
    (0..=255)
        .find(|&n| super::exit::code(n) == code)
        .unwrap_or(status::FAILURE)
}
