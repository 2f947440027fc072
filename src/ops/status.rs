use super::After;
use crate::protocol::session::{EngineState, EngineStatus, Reply, StatusReport};
use crate::session::{EngineCondition, EnginePool, ReplySink, SessionError, fold_ids};

pub(crate) async fn run(pool: &EnginePool, out: &mut ReplySink) -> Result<After, SessionError> {
    out.send(&Reply::Status(report(pool))).await?;
    Ok(After::Continue)
}

pub(crate) fn report(pool: &EnginePool) -> StatusReport {
    let engines = pool
        .roster()
        .into_iter()
        .map(|(id, host)| {
            let (state, job, reason) = match pool.state(id) {
                EngineCondition::Starting => (EngineState::Starting, None, None),
                EngineCondition::Idle => (EngineState::Idle, None, None),
                EngineCondition::Busy(job) => (EngineState::Busy, Some(job), None),
                EngineCondition::Dead(reason) => (EngineState::Dead, None, Some(reason)),
            };
            EngineStatus {
                id,
                host,
                state,
                job,
                reason,
                workdir_group: pool.sharing(id).map(|ids| fold_ids(&ids)),
                transport: pool.route(id),
            }
        })
        .collect();
    StatusReport {
        session: pool.session().to_string(),
        slurm_job: pool.slurm_job(),
        engines,
    }
}
