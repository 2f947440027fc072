//! Passing a relayed stream on: one task per downstream peer, connected
//! when the daemon says every host is ready, fed through a small bounded
//! queue so a relay never holds more than a few pieces whatever the size.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use quinn::Endpoint;
use tokio::sync::{mpsc, watch};

use super::Input;
use crate::protocol::relay::{RelayHello, RelayPeer};
use crate::transport::{Identity, Via, connect, write_frame};

/// Pieces queued per downstream peer: with QUIC's own window, what a
/// relay holds for a peer that is slower than its upstream.
const QUEUE_DEPTH: usize = 16;

enum Forward {
    Piece(Bytes),
    /// The stream is whole: finish it (a queue closed without this resets
    /// it, so the peer knows at once to get the rest elsewhere).
    End,
}

/// The downstream peers of one push.
pub(super) struct Downstream {
    queues: Vec<Option<mpsc::Sender<Forward>>>,
    dial: watch::Sender<bool>,
}

/// How a relay reaches its peers: its UDP endpoint (none on a host that
/// listens on the ssh channel only) and its own certificate.
#[derive(Clone)]
pub(in crate::engine) struct Dialer {
    pub(in crate::engine) endpoint: Option<Endpoint>,
    pub(in crate::engine) identity: Arc<Identity>,
}

impl Downstream {
    /// A task per peer, waiting for `dial`; a peer it cannot reach is
    /// told to `input` as `Unreachable`.
    pub(super) fn new(
        dialer: &Dialer,
        peers: Vec<RelayPeer>,
        transfer: u64,
        timeout: Duration,
        input: &mpsc::Sender<Input>,
    ) -> Downstream {
        let (dial, go) = watch::channel(false);
        let queues = peers
            .into_iter()
            .enumerate()
            .map(|(index, peer)| {
                let (queue, pieces) = mpsc::channel(QUEUE_DEPTH);
                let task = Link {
                    dialer: dialer.clone(),
                    peer,
                    transfer,
                    timeout,
                };
                let (input, go) = (input.clone(), go.clone());
                tokio::spawn(async move {
                    if let Err(why) = task.run(go, pieces).await {
                        let _ = input.send(Input::Unreachable(index, why)).await;
                    }
                });
                Some(queue)
            })
            .collect();
        Downstream { queues, dial }
    }

    pub(super) fn dial(&self) {
        let _ = self.dial.send(true);
    }

    /// Queue `piece` for every peer still there; waits while a queue is
    /// full, which slows the upstream down to the slowest peer.
    pub(super) async fn forward(&mut self, piece: &Bytes) {
        for slot in &mut self.queues {
            if let Some(queue) = slot {
                if queue.send(Forward::Piece(piece.clone())).await.is_err() {
                    // That peer is gone; it gets the rest from elsewhere.
                    *slot = None;
                }
            }
        }
    }

    /// The stream is whole: let every peer's task finish it.
    pub(super) async fn finish(self) {
        for queue in self.queues.into_iter().flatten() {
            let _ = queue.send(Forward::End).await;
        }
    }
}

struct Link {
    dialer: Dialer,
    peer: RelayPeer,
    transfer: u64,
    timeout: Duration,
}

impl Link {
    /// Connect once told to, then send what comes; `Err` only when the
    /// peer could not be reached at all.
    async fn run(
        self,
        mut go: watch::Receiver<bool>,
        mut pieces: mpsc::Receiver<Forward>,
    ) -> Result<(), String> {
        if go.wait_for(|&go| go).await.is_err() {
            return Ok(());
        }
        let Dialer { endpoint, identity } = &self.dialer;
        let addr = self.peer.addr;
        let Some(endpoint) = endpoint else {
            return Err(format!(
                "cannot reach {addr}: this host has no UDP endpoint (transport = \"ssh\")"
            ));
        };
        let connecting = connect(
            endpoint,
            identity,
            Via::Udp(addr),
            &self.peer.fingerprint,
            self.timeout,
        );
        let conn = match tokio::time::timeout(self.timeout, connecting).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => return Err(format!("cannot reach {addr}: {e}")),
            Err(_) => {
                return Err(format!(
                    "no answer from {addr} within {:.1} s",
                    self.timeout.as_secs_f64()
                ));
            }
        };
        let (mut send, _recv) = conn
            .open_bi()
            .await
            .map_err(|e| format!("cannot reach {addr}: {e}"))?;
        let hello = RelayHello {
            transfer: self.transfer,
        };
        write_frame(&mut send, &hello)
            .await
            .map_err(|e| format!("cannot reach {addr}: {e}"))?;
        // From here a failure is the peer's to notice and recover from.
        loop {
            match pieces.recv().await {
                Some(Forward::Piece(piece)) => {
                    if send.write_chunk(piece).await.is_err() {
                        return Ok(());
                    }
                }
                Some(Forward::End) => {
                    let _ = send.finish();
                    // The connection must outlive the bytes in flight; a
                    // peer that is lost meanwhile ends the wait.
                    let _ = send.stopped().await;
                    return Ok(());
                }
                None => {
                    let _ = send.reset(0u32.into());
                    return Ok(());
                }
            }
        }
    }
}
