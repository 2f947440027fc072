//! The peers side of relaying on an engine host: which pushes wait for
//! which peer, and the connections of those peers. A peer is let in by
//! TLS only while a push names its certificate, and then may feed only
//! that push: nothing else is served on its connection.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use quinn::{Connection, RecvStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{Input, Origin};
use crate::protocol::relay::RelayHello;
use crate::transport::{PeerPin, PeerPins, read_frame};

/// How long a peer may take to say which push its stream is for.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

struct Waiting {
    upstream: String,
    input: mpsc::Sender<Input>,
}

/// The pushes waiting for their upstream peer, by transfer.
#[derive(Default)]
pub(in crate::engine) struct Upstreams {
    waiting: Arc<Mutex<HashMap<u64, Waiting>>>,
}

/// A push waiting for its upstream; dropped, the peer is no longer let in
/// for it.
pub(super) struct Awaited {
    waiting: Arc<Mutex<HashMap<u64, Waiting>>>,
    transfer: u64,
    _pin: PeerPin,
}

impl Drop for Awaited {
    fn drop(&mut self) {
        self.waiting
            .lock()
            .expect("upstreams lock")
            .remove(&self.transfer);
    }
}

impl Upstreams {
    /// Let the peer with certificate `upstream` in, to feed `transfer`'s
    /// stream into `input`.
    pub(super) fn expect(
        &self,
        pins: &Arc<PeerPins>,
        transfer: u64,
        upstream: &str,
        input: mpsc::Sender<Input>,
    ) -> Awaited {
        let upstream = upstream.to_ascii_lowercase();
        let pin = pins.admit(&upstream);
        self.waiting
            .lock()
            .expect("upstreams lock")
            .insert(transfer, Waiting { upstream, input });
        Awaited {
            waiting: self.waiting.clone(),
            transfer,
            _pin: pin,
        }
    }

    /// The push `transfer` if it waits for the peer `fingerprint`; once
    /// only, so a second stream from the same peer is refused.
    fn take(&self, transfer: u64, fingerprint: &str) -> Option<mpsc::Sender<Input>> {
        let mut waiting = self.waiting.lock().expect("upstreams lock");
        match waiting.get(&transfer) {
            Some(w) if w.upstream == fingerprint => waiting.remove(&transfer).map(|w| w.input),
            _ => None,
        }
    }

    /// Serve a relaying peer's connection: each stream must name a push
    /// that waits for this very peer, or it is stopped unread.
    pub(in crate::engine) async fn serve(&self, conn: Connection, fingerprint: String) {
        while let Ok((_send, mut recv)) = conn.accept_bi().await {
            let hello = tokio::time::timeout(HELLO_TIMEOUT, read_frame::<_, RelayHello>(&mut recv));
            let input = match hello.await {
                Ok(Ok(Some(hello))) => self.take(hello.transfer, &fingerprint),
                _ => None,
            };
            match input {
                Some(input) => {
                    tokio::spawn(async move {
                        if input.send(Input::Attached).await.is_ok() {
                            pump(&mut recv, Origin::Peer, &input).await;
                        }
                        drop(_send);
                    });
                }
                None => {
                    eprintln!("pcl engine: refused a relay stream that no push waits for");
                    let _ = recv.stop(0u32.into());
                }
            }
        }
    }
}

/// Bytes gathered from a stream before they are passed on. A stream
/// arrives a packet at a time; passing on each packet alone costs a task
/// wake-up (and a thread switch) per 1.4 KB on every hop, which made the
/// relay CPU-bound well below the link rate.
const PIECE: usize = 256 << 10;

/// How long gathering waits for more once bytes have come: the delay it
/// adds per hop, small beside a piece's time on the link.
const GATHER: Duration = Duration::from_millis(2);

/// Pass a stream's bytes to `input` as they come, in pieces of up to
/// `PIECE` bytes, then say how it ended (for the stream's reader, any end
/// before the last frame is a loss).
pub(super) async fn pump(recv: &mut RecvStream, origin: Origin, input: &mpsc::Sender<Input>) {
    // Pieces are cut from shared blocks, each piece exactly its bytes: a
    // piece of its own allocation would pin all PIECE bytes of it while
    // it waits in a queue or in QUIC's send buffer.
    let mut block = BytesMut::new();
    loop {
        if block.len() < PIECE / 4 {
            block = BytesMut::zeroed(PIECE);
        }
        let (len, end) = gather(recv, &mut block).await;
        let piece = block.split_to(len).freeze();
        if len > 0 && input.send(Input::Piece(origin, piece)).await.is_err() {
            return;
        }
        if let Some(why) = end {
            let _ = input.send(Input::Lost(origin, why)).await;
            return;
        }
    }
}

/// Fill `piece` from `recv`: wait for the first bytes, then take more
/// until it is full or `GATHER` has passed. The bytes taken, and why the
/// stream ended if it did.
async fn gather(recv: &mut RecvStream, piece: &mut [u8]) -> (usize, Option<String>) {
    let ended = |read: Result<Option<usize>, quinn::ReadError>| match read {
        Ok(Some(n)) => Ok(n),
        Ok(None) => Err("the stream ended before the end of the file".to_string()),
        Err(e) => Err(e.to_string()),
    };
    let mut len = match ended(recv.read(piece).await) {
        Ok(n) => n,
        Err(why) => return (0, Some(why)),
    };
    let until = Instant::now() + GATHER;
    while len < piece.len() {
        // Reading is cancel-safe: a read cut off by the deadline took nothing.
        let Ok(read) = tokio::time::timeout_at(until, recv.read(&mut piece[len..])).await else {
            break;
        };
        match ended(read) {
            Ok(n) => len += n,
            Err(why) => return (len, Some(why)),
        }
    }
    (len, None)
}
