use super::{After, status};
use crate::protocol::session::{Reply, UpReport};
use crate::session::{EngineCondition, EnginePool, ReplySink, SessionError};

/// Report launch progress until every host has come up or failed and
/// which share a workdir is known, then the engine table and the
/// failures. A session with no live engine at all stops itself: there is
/// nothing to keep.
pub(crate) async fn run(pool: &EnginePool, out: &mut ReplySink) -> Result<After, SessionError> {
    let mut progress = pool.progress();
    loop {
        let now = *progress.borrow_and_update();
        out.send(&Reply::Progress(now)).await?;
        if now.ready {
            break;
        }
        if progress.changed().await.is_err() {
            break;
        }
    }
    let report = UpReport {
        status: status::report(pool),
        failures: pool.failures(),
        notes: pool.notes(),
    };
    let any_alive = pool
        .roster()
        .iter()
        .any(|(id, _)| !matches!(pool.state(*id), EngineCondition::Dead(_)));
    out.send(&Reply::Up(report)).await?;
    Ok(if any_alive {
        After::Continue
    } else {
        After::StopSession
    })
}
