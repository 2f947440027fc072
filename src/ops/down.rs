use super::After;
use crate::protocol::session::Reply;
use crate::session::{EnginePool, ReplySink, SessionError};

/// Engines are stopped before the answer, so when `pcl down` returns
/// nothing of the session is running any more; the daemon follows.
pub(crate) async fn run(pool: &EnginePool, out: &mut ReplySink) -> Result<After, SessionError> {
    pool.shutdown().await;
    out.send(&Reply::Done).await?;
    Ok(After::StopSession)
}
