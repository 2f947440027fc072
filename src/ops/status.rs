use super::After;
use crate::protocol::session::{EngineStatus, Reply, StatusReport};
use crate::session::{EnginePool, EngineState, ReplySink, SessionError};

pub async fn run(pool: &EnginePool, out: &mut ReplySink) -> Result<After, SessionError> {
    out.send(&Reply::Status(report(pool))).await?;
    Ok(After::Continue)
}

pub fn report(pool: &EnginePool) -> StatusReport {
    let engines = pool
        .roster()
        .into_iter()
        .map(|(id, host)| {
            let (state, job, reason) = match pool.state(id) {
                EngineState::Starting => ("starting", None, None),
                EngineState::Idle => ("idle", None, None),
                EngineState::Busy(job) => ("busy", Some(job), None),
                EngineState::Dead(reason) => ("dead", None, Some(reason)),
            };
            EngineStatus {
                id,
                host,
                state: state.to_string(),
                job,
                reason,
            }
        })
        .collect();
    StatusReport {
        session: pool.session().to_string(),
        slurm_job: pool.slurm_job(),
        engines,
    }
}
