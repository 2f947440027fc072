//! Exit statuses, named once: the verbs return them, `main` maps errors to
//! them, and the manual pages print `TABLE`.

use std::process::ExitCode;

/// A call that went wrong as a whole: no session, refused by the session.
pub const FAILURE: u8 = 1;

/// Input refused before anything ran (bad names, misused options, a NUL
/// byte in map input); also what clap uses for a bad command line.
pub const USAGE: u8 = 2;

/// `pcl map`'s status is the number of failed items, at most this (GNU
/// parallel's cap).
pub const MAP_MAX_FAILED: u64 = 101;

/// Aborted by Ctrl-C or `pcl abort`, as a shell reports death by SIGINT.
pub const INTERRUPTED: u8 = 130;

/// Stdout was closed by its reader (`pcl gather x | head -1`): pcl stops
/// quietly with the status a shell reports for `cat` killed by SIGPIPE.
pub const BROKEN_PIPE: u8 = 141;

/// The statuses every verb shares, for the manual pages.
pub const TABLE: &[(&str, &str)] = &[
    ("0", "success: every target engine succeeded"),
    (
        "1",
        "the call failed as a whole (no session, refused request, \
         unreadable local file), or an engine reported an error",
    ),
    (
        "2",
        "invalid command line or input, refused before anything ran",
    ),
    (
        "N",
        "px: the largest exit status of the commands; map: the number of \
         failed items, at most 101; up, restart: 1 if any host or engine \
         failed to start",
    ),
    ("124", "a command or task stopped by --timeout (its status)"),
    ("130", "aborted by Ctrl-C or pcl abort"),
    (
        "141",
        "stdout was closed by its reader (as cat killed by SIGPIPE); nothing \
         is printed",
    ),
    ("255", "an engine could not be reached or was lost mid-call"),
];

/// Input refused before anything ran: `main` prints it and exits `USAGE`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Usage(pub String);

pub fn usage(why: impl std::fmt::Display) -> anyhow::Error {
    Usage(why.to_string()).into()
}

/// The status and message (if any) for an error that ended the call.
pub fn for_error(e: &anyhow::Error) -> (ExitCode, Option<String>) {
    if e.chain().any(is_broken_pipe) {
        return (ExitCode::from(BROKEN_PIPE), None);
    }
    let status = if e.downcast_ref::<Usage>().is_some() {
        USAGE
    } else {
        FAILURE
    };
    (ExitCode::from(status), Some(format!("pcl: {e:#}")))
}

fn is_broken_pipe(cause: &(dyn std::error::Error + 'static)) -> bool {
    cause
        .downcast_ref::<std::io::Error>()
        .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_stdout_is_quiet_and_usage_is_two() {
        let pipe = anyhow::Error::from(std::io::Error::from(std::io::ErrorKind::BrokenPipe))
            .context("writing the output");
        assert_eq!(for_error(&pipe), (ExitCode::from(BROKEN_PIPE), None));
        let (code, message) = for_error(&usage("no items"));
        assert_eq!(code, ExitCode::from(USAGE));
        assert_eq!(message.as_deref(), Some("pcl: no items"));
        let (code, _) = for_error(&anyhow::anyhow!("no session"));
        assert_eq!(code, ExitCode::from(FAILURE));
    }
}
