//! Exit statuses, named once: the verbs return them, the CLI maps errors
//! to them, and the manual pages print `table`. (A command stopped by
//! `--timeout` reports 124, as timeout(1); the engine names that one.)

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

/// An engine that could not be reached, or was lost mid-call.
pub const UNREACHABLE: i32 = 255;

/// The statuses every verb shares, for the manual pages.
pub fn table() -> Vec<(String, &'static str)> {
    vec![
        ("0".into(), "success: every target engine succeeded"),
        (
            FAILURE.to_string(),
            "the call failed as a whole (no session, refused request, \
             unreadable local file), or an engine reported an error",
        ),
        (
            USAGE.to_string(),
            "invalid command line or input, refused before anything ran",
        ),
        (
            "N".into(),
            "px: the largest exit status of the commands; map: the number of \
             failed items, at most 101; up, restart: 1 if any host or engine \
             failed to start",
        ),
        (
            "124".into(),
            "a command or task stopped by --timeout (its status)",
        ),
        (INTERRUPTED.to_string(), "aborted by Ctrl-C or pcl abort"),
        (
            BROKEN_PIPE.to_string(),
            "stdout was closed by its reader (as cat killed by SIGPIPE); \
             nothing is printed",
        ),
        (
            UNREACHABLE.to_string(),
            "an engine could not be reached or was lost mid-call",
        ),
    ]
}
