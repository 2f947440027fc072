//! A relayed `push --file` on an engine host: the bulk stream comes from
//! the upstream peer the daemon named (or from the daemon itself), is
//! passed on to the downstream peers as it arrives, and is written to the
//! host's own copy exactly as `WriteFile` writes one (temporary file,
//! checksum, fsync, rename). If the upstream is lost, or never comes, the
//! daemon is asked to feed the stream from where it stopped: the stream is
//! a function of the file alone, so the downstream peers never notice.

mod downstream;
mod frames;
mod peers;

use std::time::Duration;

use bytes::Bytes;
use quinn::{RecvStream, SendStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

pub(super) use downstream::Dialer;
use downstream::Downstream;
use frames::{Frames, TooLarge};
pub(super) use peers::Upstreams;

use super::blocking::off_the_runtime;
use super::data::{Refused, Target};
use super::host::Host;
use crate::protocol::data::{Bulk, Checksum};
use crate::protocol::engine::EngineReply;
use crate::protocol::relay::{RelayControl, RelayFile};
use crate::transport::{MAX_FRAME, read_frame, write_frame};

/// How often the daemon hears how far the copy got.
const PROGRESS_EVERY: Duration = Duration::from_millis(200);

/// Where bytes of the stream come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Peer,
    Daemon,
}

/// What the relay loop waits for.
enum Input {
    Control(RelayControl),
    /// The upstream peer connected.
    Attached,
    Piece(Origin, Bytes),
    /// A source ended before the stream's end.
    Lost(Origin, String),
    /// Downstream peer `index` could not be reached.
    Unreachable(usize, String),
}

impl From<TooLarge> for Refused {
    fn from(TooLarge(len): TooLarge) -> Refused {
        Refused::Protocol(format!("a frame of {len} bytes"))
    }
}

pub(super) async fn relay_file(
    host: &Host,
    relay: RelayFile,
    send: &mut SendStream,
    recv: &mut RecvStream,
) -> Result<(), Refused> {
    let (input, mut inputs) = mpsc::channel(4);
    let mut target = Target::open(host, relay.id, &relay.path).await?;
    let timeout = Duration::from_millis(relay.peer_timeout_ms);
    let mut upstream = relay.upstream.as_deref().map(|fp| {
        host.upstreams
            .expect(&host.pins, relay.transfer, fp, input.clone())
    });
    let downstream = Downstream::new(
        &host.dialer,
        relay.downstream,
        relay.transfer,
        timeout,
        &input,
    );
    tell(send, &EngineReply::RelayReady).await?;
    let mut copy = Copy {
        downstream,
        local: LocalCopy::new(),
        at: 0,
        skip: 0,
    };
    let daemon = read_daemon(recv, input);
    tokio::pin!(daemon);
    let mut source = None;
    // Once told to dial, a host fed by a peer that has not come by this
    // time asks the daemon instead.
    let mut attach_by: Option<Instant> = None;
    let mut tick = tokio::time::interval(PROGRESS_EVERY);
    let mut reported = 0;
    loop {
        let next = tokio::select! {
            next = inputs.recv() => next,
            () = &mut daemon => None,
            () = sleep_until(attach_by), if source.is_none() && attach_by.is_some() => {
                attach_by = None;
                upstream = None;
                let why = format!("no peer connected within {:.1} s", (2 * timeout).as_secs_f64());
                let resume = EngineReply::Resume { at: copy.at, why, attached: false };
                tell(send, &resume).await?;
                continue;
            }
            _ = tick.tick() => {
                if copy.local.written != reported {
                    reported = copy.local.written;
                    tell(send, &EngineReply::Relayed(reported)).await?;
                }
                continue;
            }
        };
        match next.ok_or(Refused::CutOff)? {
            Input::Control(RelayControl::Dial) => {
                copy.downstream.dial();
                if upstream.is_some() {
                    attach_by = Some(Instant::now() + 2 * timeout);
                }
            }
            Input::Control(RelayControl::Feed { from }) => {
                copy.skip = copy.at.checked_sub(from).ok_or_else(|| {
                    Refused::Protocol(format!("fed from byte {from}, past {}", copy.at))
                })?;
                source = Some(Origin::Daemon);
                upstream = None;
            }
            Input::Attached if upstream.is_some() => source = Some(Origin::Peer),
            Input::Attached => {}
            Input::Piece(origin, piece) if source == Some(origin) => {
                copy.take(piece, &mut target.file, &relay.path).await?;
                if copy.local.whole {
                    break;
                }
            }
            Input::Piece(..) => {}
            Input::Lost(Origin::Daemon, _) => return Err(Refused::CutOff),
            Input::Lost(Origin::Peer, why) if source == Some(Origin::Peer) => {
                source = None;
                let resume = EngineReply::Resume {
                    at: copy.at,
                    why,
                    attached: true,
                };
                tell(send, &resume).await?;
            }
            Input::Lost(Origin::Peer, _) => {}
            Input::Unreachable(peer, why) => {
                tell(send, &EngineReply::PeerUnreachable { peer, why }).await?;
            }
        }
    }
    drop(upstream);
    copy.downstream.finish().await;
    tell(send, &EngineReply::Relayed(copy.local.written)).await?;
    target.commit()
}

/// A reply to the daemon; one that cannot be sent means the daemon is gone.
async fn tell(send: &mut SendStream, reply: &EngineReply) -> Result<(), Refused> {
    write_frame(send, reply).await.map_err(|_| Refused::CutOff)
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The daemon's side of the stream: control frames until `Feed`, then
/// the bulk stream's bytes. Never returns once it has told its end.
async fn read_daemon(recv: &mut RecvStream, input: mpsc::Sender<Input>) {
    loop {
        match read_frame::<_, RelayControl>(recv).await {
            Ok(Some(control)) => {
                let feed = matches!(control, RelayControl::Feed { .. });
                if input.send(Input::Control(control)).await.is_err() {
                    break;
                }
                if feed {
                    peers::pump(recv, Origin::Daemon, &input).await;
                    break;
                }
            }
            Ok(None) => {
                let why = "the session ended the push".to_string();
                let _ = input.send(Input::Lost(Origin::Daemon, why)).await;
                break;
            }
            Err(e) => {
                let _ = input.send(Input::Lost(Origin::Daemon, e.to_string())).await;
                break;
            }
        }
    }
    std::future::pending().await
}

/// The stream as it passes through: bytes are counted, passed on, and
/// their frames written to the local copy.
struct Copy {
    downstream: Downstream,
    local: LocalCopy,
    /// Bytes of the stream taken so far.
    at: u64,
    /// Bytes of a new source to drop: it started before `at`.
    skip: u64,
}

impl Copy {
    async fn take(
        &mut self,
        mut piece: Bytes,
        file: &mut std::fs::File,
        what: &str,
    ) -> Result<(), Refused> {
        let skip = self.skip.min(piece.len() as u64);
        self.skip -= skip;
        let _ = piece.split_to(skip as usize);
        if piece.is_empty() {
            return Ok(());
        }
        self.at += piece.len() as u64;
        self.downstream.forward(&piece).await;
        // Only a piece that completes a frame writes to the file, off the
        // runtime thread: the others are only copied, and need no thread
        // of their own (each hand-over costs a thread switch).
        if !self.local.frames.completes(piece.len()) {
            return self.local.write(&piece, file, what);
        }
        let mut local = std::mem::replace(&mut self.local, LocalCopy::new());
        let mut out = file.try_clone().map_err(|source| Refused::Write {
            path: what.to_string(),
            source,
        })?;
        let what = what.to_string();
        let (local, written) = off_the_runtime(move || {
            let written = local.write(&piece, &mut out, &what);
            (local, written)
        })
        .await;
        self.local = local;
        written
    }
}

/// The local copy of the stream: its frames put back together, hashed
/// and written.
struct LocalCopy {
    frames: Frames,
    digest: Checksum,
    /// Bytes of the file written.
    written: u64,
    /// The end frame came and its digest matched.
    whole: bool,
}

impl LocalCopy {
    fn new() -> LocalCopy {
        LocalCopy {
            frames: Frames::new(MAX_FRAME),
            digest: Checksum::new(),
            written: 0,
            whole: false,
        }
    }

    fn write(&mut self, piece: &[u8], file: &mut std::fs::File, what: &str) -> Result<(), Refused> {
        let write_err = |source| Refused::Write {
            path: what.to_string(),
            source,
        };
        let (digest, written, whole) = (&mut self.digest, &mut self.written, &mut self.whole);
        self.frames
            .push(piece, |body| match postcard::from_bytes::<Bulk>(body) {
                Ok(Bulk::Chunk(data)) if !*whole => {
                    digest.update(data);
                    *written += data.len() as u64;
                    std::io::Write::write_all(file, data).map_err(write_err)
                }
                Ok(Bulk::End(expected)) if !*whole => {
                    if digest.digest() != expected {
                        return Err(Refused::Checksum(what.to_string()));
                    }
                    file.sync_all().map_err(write_err)?;
                    *whole = true;
                    Ok(())
                }
                _ => Err(Refused::Protocol("a malformed bulk frame".into())),
            })
    }
}
