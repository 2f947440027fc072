//! How an error that ends a call becomes its exit status (see
//! `protocol::status`, where the statuses are named).

use std::process::ExitCode;

use crate::protocol::status::{BROKEN_PIPE, FAILURE, USAGE};

/// The process's exit code for a status (statuses past 255 cannot be
/// one: they are capped there, as the largest).
pub(super) fn code(status: i32) -> ExitCode {
    ExitCode::from(status.clamp(0, 255) as u8)
}

/// Input refused before anything ran: `main` prints it and exits `USAGE`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(super) struct Usage(pub String);

pub(super) fn usage(why: impl std::fmt::Display) -> anyhow::Error {
    Usage(why.to_string()).into()
}

/// The status and message (if any) for an error that ended the call.
pub(super) fn for_error(e: &anyhow::Error) -> (ExitCode, Option<String>) {
    if e.chain().any(is_broken_pipe) {
        return (code(BROKEN_PIPE), None);
    }
    let status = if e.downcast_ref::<Usage>().is_some() {
        USAGE
    } else {
        FAILURE
    };
    (code(status), Some(format!("pcl: {e:#}")))
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
        assert_eq!(for_error(&pipe), (super::code(BROKEN_PIPE), None));
        let (status, message) = for_error(&usage("no items"));
        assert_eq!(status, super::code(USAGE));
        assert_eq!(message.as_deref(), Some("pcl: no items"));
        let (status, _) = for_error(&anyhow::anyhow!("no session"));
        assert_eq!(status, super::code(FAILURE));
    }
}
