//! One host of a relayed push, as the daemon drives it: its `RelayFile`
//! request, the commands the coordinator gives it (dial, feed), the feed
//! itself when the daemon is this host's source, and what it reports.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::feed::feed_from;
use crate::ops::abort::Abort;
use crate::ops::transfer::{ABORTED, Failure, Outcome, stored};
use crate::protocol::data::EngineData;
use crate::protocol::engine::{EngineReply, EngineRequest};
use crate::protocol::relay::{RelayControl, RelayFile};
use crate::session::EnginePool;
use crate::transport::write_frame;

/// Pieces of the daemon's feed queued for one host.
const QUEUE_DEPTH: usize = 32;

/// What the coordinator tells a member.
#[derive(Debug, Clone, Copy)]
pub(super) enum Command {
    Dial,
    /// Send this host the stream from this byte on (once: later ones are
    /// dropped, the host being fed already).
    Feed(u64),
}

/// What a member tells the coordinator.
#[derive(Debug)]
pub(super) enum Event {
    Ready(usize),
    /// Bytes of the file this member has written.
    Written(usize, u64),
    /// No peer came to feed this member; it asked the daemon instead.
    NoPeer {
        member: usize,
        why: String,
    },
    /// This member could not reach its downstream peer `peer`.
    Unreachable {
        member: usize,
        peer: usize,
        why: String,
    },
    /// This member's part is over, either way.
    Ended(usize),
}

/// What every member of one push shares.
pub(super) struct Push {
    pub(super) pool: Arc<EnginePool>,
    pub(super) job: String,
    pub(super) local: PathBuf,
    pub(super) size: u64,
}

pub(super) struct Member {
    pub(super) index: usize,
    pub(super) request: RelayFile,
    pub(super) commands: mpsc::UnboundedSender<Command>,
    pub(super) events: mpsc::UnboundedSender<Event>,
}

impl Member {
    pub(super) async fn run(
        self,
        push: Arc<Push>,
        commands: mpsc::UnboundedReceiver<Command>,
        mut abort: Abort,
    ) -> Outcome {
        let (index, events) = (self.index, self.events.clone());
        let outcome = self.drive(&push, commands, &mut abort).await;
        let _ = events.send(Event::Ended(index));
        outcome
    }

    async fn drive(
        self,
        push: &Push,
        mut commands: mpsc::UnboundedReceiver<Command>,
        abort: &mut Abort,
    ) -> Outcome {
        let id = self.request.id;
        let request = EngineRequest::Data(EngineData::RelayFile(self.request));
        let mut call = push.pool.open(id, &push.job, &request).await?;
        match call.next().await {
            Ok(Some(EngineReply::RelayReady)) => {
                let _ = self.events.send(Event::Ready(self.index));
            }
            Ok(Some(EngineReply::Stored)) => {
                return Err(Failure::Lost("the engine stored nothing yet".into()));
            }
            answer => return stored(id, answer),
        }
        let (send, mut replies) = call.halves();
        let (feed, mut pieces) = mpsc::channel::<Bytes>(QUEUE_DEPTH);
        let mut feed = Some(feed);
        let (index, events, resume) = (self.index, &self.events, &self.commands);
        let reader = async {
            loop {
                match replies.next().await {
                    Ok(Some(EngineReply::Relayed(n))) => {
                        let _ = events.send(Event::Written(index, n));
                    }
                    Ok(Some(EngineReply::Resume { at, why, attached })) => {
                        if !attached {
                            let _ = events.send(Event::NoPeer { member: index, why });
                        }
                        let _ = resume.send(Command::Feed(at));
                    }
                    Ok(Some(EngineReply::PeerUnreachable { peer, why })) => {
                        let member = index;
                        let _ = events.send(Event::Unreachable { member, peer, why });
                    }
                    answer => return stored(id, answer),
                }
            }
        };
        let writer = async {
            loop {
                tokio::select! {
                    command = commands.recv() => match command {
                        Some(Command::Dial) => {
                            if write_frame(&mut *send, &RelayControl::Dial).await.is_err() {
                                break;
                            }
                        }
                        Some(Command::Feed(from)) => {
                            let Some(queue) = feed.take() else { continue };
                            if write_frame(&mut *send, &RelayControl::Feed { from }).await.is_err() {
                                break;
                            }
                            let (local, size) = (push.local.clone(), push.size);
                            tokio::task::spawn_blocking(move || feed_from(&local, size, from, &queue));
                        }
                        None => break,
                    },
                    Some(piece) = pieces.recv() => {
                        if send.write_chunk(piece).await.is_err() {
                            break;
                        }
                    }
                }
            }
            // The host's answer says why its stream stopped.
            std::future::pending::<Outcome>().await
        };
        tokio::select! {
            outcome = reader => return outcome,
            outcome = writer => return outcome,
            () = abort.wait() => {}
        }
        // A reset, not an end: the host drops its temporary file.
        let _ = send.reset(0u32.into());
        Err(Failure::Aborted(ABORTED.into()))
    }
}
