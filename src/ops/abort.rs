//! Whether a call's job was aborted (Ctrl-C, `pcl abort`), for the verbs
//! that stop their work when it is.

use tokio::sync::watch;

use crate::session::ReplySink;

/// Resolves once the call's job is aborted (Ctrl-C, `pcl abort`).
#[derive(Clone)]
pub(crate) struct Abort(Option<watch::Receiver<bool>>);

impl Abort {
    pub(crate) fn of(out: &ReplySink) -> Abort {
        Abort(out.job().map(|job| job.cancelled()))
    }

    pub(crate) async fn wait(&mut self) {
        if let Some(cancelled) = &mut self.0 {
            if cancelled.wait_for(|&c| c).await.is_ok() {
                return;
            }
        }
        // Not a job, or the job is gone: nothing can abort this call.
        std::future::pending::<()>().await
    }
}
