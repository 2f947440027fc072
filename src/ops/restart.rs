//! `pcl restart`: relaunch the hosts of dead target engines, with fresh
//! engines; live engines are not touched.

use std::sync::Arc;

use super::{After, status};
use crate::protocol::session::{Reply, UpReport};
use crate::protocol::verbs::RestartRequest;
use crate::session::{EngineCondition, EnginePool, ReplySink, SessionError};

/// Answers like `up`: the engine table, and the hosts that failed again.
pub(crate) async fn run(
    pool: &Arc<EnginePool>,
    request: RestartRequest,
    out: &mut ReplySink,
) -> Result<After, SessionError> {
    let ids = out.targets(pool, &request.targets)?;
    let dead: Vec<u32> = ids
        .into_iter()
        .filter(|&id| matches!(pool.state(id), EngineCondition::Dead(_)))
        .collect();
    let outcomes = pool.restart(&dead).await;
    let relaunched: Vec<&String> = outcomes.iter().map(|(host, _)| host).collect();
    let notes = pool
        .notes()
        .into_iter()
        .filter(|(host, _)| relaunched.contains(&host))
        .collect();
    let failures = outcomes
        .into_iter()
        .filter_map(|(host, outcome)| outcome.err().map(|why| (host, why)))
        .collect();
    let mut report = status::report(pool);
    report.engines.retain(|e| dead.contains(&e.id));
    out.send(&Reply::Up(UpReport {
        status: report,
        failures,
        notes,
    }))
    .await?;
    Ok(After::Continue)
}
