//! How an error that ends a call becomes its exit status (see
//! `protocol::exit`, where the statuses are named).

use std::process::ExitCode;

use crate::protocol::exit::{BROKEN_PIPE, FAILURE, USAGE};

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
