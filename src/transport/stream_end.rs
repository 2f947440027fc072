//! Ending a request's stream without an extra packet. quinn sends
//! STOP_SENDING for a receive stream dropped before its end was read, even
//! when the end has already arrived; that frame needs acknowledging, so a
//! `px` cost each engine host one more packet out and one more wakeup of
//! the daemon, 25 ms later (the delayed ACK).

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Waker};

use quinn::RecvStream;

/// Read `recv`'s end if it is already there, without waiting: dropped
/// after this, a stream whose end had arrived sends nothing. One whose
/// end has not arrived is left as it was (dropping it still tells the
/// peer to stop).
pub fn take_end_if_there(recv: &mut RecvStream) {
    let mut byte = [0u8; 1];
    // Polled once: a pending read registers a waker that nothing needs.
    let _ = pin!(recv.read(&mut byte)).poll(&mut Context::from_waker(Waker::noop()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::endpoint::test_link::link;
    use crate::transport::{read_frame, write_frame};
    use std::time::Duration;

    /// STOP_SENDING frames the daemon's side sent after `exchanges`
    /// request-reply rounds on streams of their own, each reply read and
    /// its stream dropped (`take_end` first, or not).
    async fn stop_sendings(exchanges: u32, take_end: bool) -> u64 {
        let (engine, daemon, _kept) = link().await;
        let serve = tokio::spawn(async move {
            while let Ok((mut send, mut recv)) = engine.accept_bi().await {
                let n: u32 = read_frame(&mut recv).await.unwrap().unwrap();
                write_frame(&mut send, &(n + 1)).await.unwrap();
                send.finish().unwrap();
            }
        });
        for n in 0..exchanges {
            let (mut send, mut recv) = daemon.open_bi().await.unwrap();
            write_frame(&mut send, &n).await.unwrap();
            send.finish().unwrap();
            let reply: u32 = read_frame(&mut recv).await.unwrap().unwrap();
            assert_eq!(reply, n + 1);
            // The reply's end comes in its packet; wait for it to be in.
            tokio::time::sleep(Duration::from_millis(20)).await;
            if take_end {
                take_end_if_there(&mut recv);
            }
            drop(recv);
        }
        // What a drop queued goes out well within this.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let sent = daemon.stats().frame_tx.stop_sending;
        daemon.close(0u32.into(), b"done");
        serve.abort();
        sent
    }

    #[tokio::test]
    async fn a_stream_whose_end_was_taken_is_dropped_without_stop_sending() {
        assert_eq!(stop_sendings(5, true).await, 0);
        // Without it, each dropped stream tells the peer to stop.
        assert_eq!(stop_sendings(5, false).await, 5);
    }
}
