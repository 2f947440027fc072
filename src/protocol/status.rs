//! Every exit status pcl gives, by name, in one place: the engines report
//! them, the daemon adds its own, and the CLI exits with them (README,
//! "Exit statuses").

/// Everything succeeded.
pub const SUCCESS: i32 = 0;
/// An engine reported an error, part of an output was lost, or the
/// request was refused as a whole (bad input that is not a usage error).
pub const FAILURE: i32 = 1;
/// The command line itself was wrong, or input was refused before any
/// engine was contacted.
pub const USAGE: i32 = 2;
/// A command stopped by `--timeout`, as timeout(1).
pub const TIMED_OUT: i32 = 124;
/// A command stopped by an interrupt (Ctrl-C, `pcl interrupt`, `pcl
/// abort`), as at a terminal.
pub const INTERRUPTED: i32 = 130;
/// Stdout was closed by its reader (`pcl gather x | head -1`): pcl stops
/// quietly with the status a shell reports for `cat` killed by SIGPIPE.
pub const BROKEN_PIPE: i32 = 141;
/// An engine that is dead, unreachable or lost mid-call.
pub const UNREACHABLE: i32 = 255;
/// `pcl map`'s status counts failed items, up to this (as GNU parallel).
pub const MAP_MAX_FAILED: i32 = 101;

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
            TIMED_OUT.to_string(),
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
