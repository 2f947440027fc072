//! File work that may block, kept off the engine host's one runtime thread.

/// Run `work` (a write to a slow or NFS disk, say) on a thread of its
/// own, so that the engine host's runtime thread goes on serving QUIC and
/// the other engines meanwhile. A panic in it goes on in the caller; it
/// is never cancelled but by the runtime shutting down, which drops the
/// caller too.
pub(super) async fn off_the_runtime<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> T {
    match tokio::task::spawn_blocking(work).await {
        Ok(done) => done,
        Err(e) => match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(_) => std::future::pending().await,
        },
    }
}
