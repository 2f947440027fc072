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
/// An engine that is dead, unreachable or lost mid-call.
pub const UNREACHABLE: i32 = 255;
/// `pcl map`'s status counts failed items, up to this (as GNU parallel).
pub const MAP_MAX_FAILED: i32 = 101;
