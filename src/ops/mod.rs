//! One file per verb. Each runs inside the daemon against the engine
//! pool and writes its replies to the CLI that asked.

mod data;
pub mod down;
mod gather;
mod held_output;
pub mod ids;
pub mod jobs;
mod lines;
pub mod map;
mod pull;
mod push;
pub mod px;
pub mod restart;
mod scatter;
pub mod status;
mod transfer;
pub mod up;

use std::sync::Arc;

use crate::protocol::session::Request;
use crate::session::{EnginePool, ReplySink, SessionError};

/// What the daemon does once a verb has answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    Continue,
    StopSession,
}

pub async fn dispatch(
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
