use super::After;
use crate::protocol::session::Reply;
use crate::session::{EngineCondition, EnginePool, ReplySink, SessionError};

/// The engines that can take work (not dead), in id order.
pub(crate) async fn run(pool: &EnginePool, out: &mut ReplySink) -> Result<After, SessionError> {
    let ids = pool
        .roster()
        .into_iter()
        .map(|(id, _)| id)
        .filter(|&id| !matches!(pool.state(id), EngineCondition::Dead(_)))
        .collect();
    out.send(&Reply::Ids(ids)).await?;
    Ok(After::Continue)
}
