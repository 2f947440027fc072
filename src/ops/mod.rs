//! One file per verb. Each runs inside the daemon against the engine
//! pool and writes its replies to the CLI that asked.

mod abort;
mod data;
pub(crate) mod down;
mod gather;
mod held_output;
pub(crate) mod ids;
pub(crate) mod jobs;
mod lines;
pub(crate) mod map;
mod placement;
mod pull;
mod push;
pub(crate) mod px;
mod relay;
pub(crate) mod restart;
mod scatter;
pub(crate) mod status;
mod transfer;
pub(crate) mod up;

use std::sync::Arc;

use crate::protocol::session::Request;
use crate::session::{EnginePool, ReplySink, SessionError};

/// What the daemon does once a verb has answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum After {
    Continue,
    StopSession,
}

pub(crate) async fn dispatch(
    pool: &Arc<EnginePool>,
    request: Request,
    out: &mut ReplySink,
) -> Result<After, SessionError> {
    match request {
        Request::Up => up::run(pool, out).await,
        Request::Down => down::run(pool, out).await,
        Request::Ids => ids::run(pool, out).await,
        Request::Status => status::run(pool, out).await,
        Request::Px(request) => px::run(pool, request, out).await,
        Request::Restart(request) => restart::run(pool, request, out).await,
        Request::Map(request) => map::run(pool, request, out).await,
        request @ (Request::Jobs
        | Request::Wait(_)
        | Request::Result(_)
        | Request::Abort(_)
        | Request::Interrupt { .. }
        | Request::Async { .. }) => jobs::run(pool, request, out).await,
        Request::Data(request) => data::run(pool, request, out).await,
        Request::Chunk(_) | Request::Eof => Err(SessionError::Refused(
            "stdin data without a request that reads it".into(),
        )),
    }
}
