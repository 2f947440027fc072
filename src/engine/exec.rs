//! One `Exec` (a px) on an engine host: the command runs in each of the
//! request's engines at once, and their replies share the one stream.
//! Every engine of a host answers on it, and its shells end at different
//! moments: sent as they came, the ends of a host's engines took a
//! packet each (and a wakeup and an acknowledgement at both ends). An
//! engine's end, with any output read together with it, may wait for the
//! host's other engines; output of a command still running goes at once,
//! so a long command is still seen live. Which replies may wait is
//! `ExecReplies`, with no I/O and no clock; `Host::exec` sends what it
//! gives and keeps the deadline.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use quinn::{SendStream, StoppedError, VarInt};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::host::{Engine, Host};
use super::{EngineError, OutputSink};
use crate::protocol::engine::{EngineReply, ExecEvent};
use crate::transport::{TransportError, encode_frame_into};

/// The longest an engine's end waits for the others of its host: short
/// enough that nobody watching notices, long enough to span the spread of
/// a px's ends when many engines share a machine's cores.
const REPLY_HOLD: Duration = Duration::from_millis(100);

struct ExecReplies {
    /// Engines of this request that have not ended.
    running: usize,
    /// Engines whose output is held without their end: a command still
    /// running, whose output must not wait.
    unended_output: Vec<u32>,
    /// Encoded frames not sent yet.
    held: Vec<u8>,
}

impl ExecReplies {
    fn new(engines: usize) -> ExecReplies {
        ExecReplies {
            running: engines,
            unended_output: Vec::new(),
            held: Vec::new(),
        }
    }

    fn add(&mut self, reply: &EngineReply) -> Result<(), TransportError> {
        encode_frame_into(reply, &mut self.held)?;
        if let EngineReply::Exec { id, event } = reply {
            match event {
                ExecEvent::Stdout(_) | ExecEvent::Stderr(_) => {
                    if !self.unended_output.contains(id) {
                        self.unended_output.push(*id);
                    }
                }
                ExecEvent::Done(_) | ExecEvent::Error(_) => {
                    self.unended_output.retain(|other| other != id);
                    self.running = self.running.saturating_sub(1);
                }
            }
        }
        Ok(())
    }

    /// Nothing is held.
    fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// What is held must go now: it has output of a running command, or
    /// every engine has ended and nothing more will join it.
    fn must_send(&self) -> bool {
        !self.held.is_empty() && (self.running == 0 || !self.unended_output.is_empty())
    }

    /// The frames to send, leaving nothing held.
    fn take(&mut self) -> Vec<u8> {
        self.unended_output.clear();
        std::mem::take(&mut self.held)
    }
}

impl Host {
    /// Run `command` in each engine of `ids` at once, their answers
    /// interleaved on the one stream as they come.
    pub(super) async fn exec(
        &self,
        ids: Vec<u32>,
        command: String,
        timeout: Option<Duration>,
        send: &mut SendStream,
    ) -> Result<(), EngineError> {
        let (tx, mut replies) = mpsc::channel(EXEC_QUEUE);
        let command: Arc<str> = command.into();
        let mut held = ExecReplies::new(ids.len());
        for id in ids {
            let sink = ExecSink {
                id,
                replies: tx.clone(),
                stopped: Box::pin(send.stopped()),
            };
            let engine = self.engine(id).await;
            let command = command.clone();
            tokio::spawn(async move { exec_one(engine, &command, timeout, sink).await });
        }
        drop(tx);
        let mut send_by: Option<Instant> = None;
        loop {
            let far = || Instant::now() + Duration::from_secs(86400);
            tokio::select! {
                reply = replies.recv() => {
                    let Some(reply) = reply else { break };
                    // The other engines woken by the same round of events
                    // put their replies in first: one write for all.
                    tokio::task::yield_now().await;
                    held.add(&reply)?;
                    while let Ok(reply) = replies.try_recv() {
                        held.add(&reply)?;
                    }
                }
                _ = tokio::time::sleep_until(send_by.unwrap_or_else(far)), if send_by.is_some() => {}
            }
            if held.must_send() || send_by.is_some_and(|t| t <= Instant::now()) {
                send_by = None;
                // A daemon that stopped listening loses the output, not
                // the engine: the runs go on to their ends.
                let _ = send.write_all(&held.take()).await;
            } else if !held.is_empty() && send_by.is_none() {
                send_by = Some(Instant::now() + REPLY_HOLD);
            }
        }
        // Every engine sent its end, so nothing should be left; but an
        // engine's task that died without one must not take the others'
        // replies with it.
        if !held.is_empty() {
            let _ = send.write_all(&held.take()).await;
        }
        Ok(())
    }
}

/// Replies of one `Exec` waiting for its stream: enough to keep every
/// shell's pipe drained while the stream is busy, and a bound on what a
/// command that prints faster than the link carries holds in memory.
const EXEC_QUEUE: usize = 64;

async fn exec_one(
    engine: Result<Arc<Engine>, String>,
    command: &str,
    timeout: Option<Duration>,
    mut sink: ExecSink,
) {
    let event = match engine {
        Ok(engine) => {
            let mut shell = engine.shell.lock().await;
            let end = shell.run_user(command, timeout, &mut sink).await;
            engine.pid.store(shell.pid(), Ordering::SeqCst);
            match end {
                Ok(end) => ExecEvent::Done(end),
                Err(e) => ExecEvent::Error(e.to_string()),
            }
        }
        Err(e) => ExecEvent::Error(e),
    };
    sink.send(event).await;
}

/// One engine's part of an `Exec`.
struct ExecSink {
    id: u32,
    replies: mpsc::Sender<EngineReply>,
    stopped: Pin<Box<dyn Future<Output = Result<Option<VarInt>, StoppedError>> + Send>>,
}

impl ExecSink {
    async fn send(&mut self, event: ExecEvent) {
        let reply = EngineReply::Exec { id: self.id, event };
        let _ = self.replies.send(reply).await;
    }
}

impl OutputSink for ExecSink {
    async fn stdout(&mut self, data: Vec<u8>) {
        self.send(ExecEvent::Stdout(data)).await;
    }
    async fn stderr(&mut self, data: Vec<u8>) {
        self.send(ExecEvent::Stderr(data)).await;
    }
    /// The daemon stopped reading the stream, or the connection is lost:
    /// the output has nowhere to go.
    async fn abandoned(&mut self) {
        let _ = self.stopped.as_mut().await;
    }
}

#[cfg(test)]
mod tests {
    use super::ExecReplies;
    use crate::protocol::engine::{EngineReply, ExecEnd, ExecEvent, ExecOutcome};

    fn reply(id: u32, event: ExecEvent) -> EngineReply {
        EngineReply::Exec { id, event }
    }

    fn done(id: u32) -> EngineReply {
        reply(
            id,
            ExecEvent::Done(ExecEnd {
                status: 0,
                outcome: ExecOutcome::Finished,
            }),
        )
    }

    #[test]
    fn ends_wait_for_the_other_engines_and_go_together() {
        let mut replies = ExecReplies::new(3);
        replies.add(&done(0)).unwrap();
        assert!(!replies.must_send(), "two engines still run");
        replies
            .add(&reply(1, ExecEvent::Stdout(b"last words".to_vec())))
            .unwrap();
        replies.add(&done(1)).unwrap();
        assert!(!replies.must_send(), "output read with its end waits too");
        replies
            .add(&reply(2, ExecEvent::Error("no shell".into())))
            .unwrap();
        assert!(replies.must_send(), "every engine has ended");
        let frames = replies.take();
        assert!(!frames.is_empty());
        assert!(replies.is_empty() && !replies.must_send());
    }

    #[test]
    fn output_of_a_running_command_goes_at_once_with_what_waited() {
        let mut replies = ExecReplies::new(2);
        replies.add(&done(0)).unwrap();
        replies
            .add(&reply(1, ExecEvent::Stderr(b"progress".to_vec())))
            .unwrap();
        assert!(replies.must_send(), "engine 1 is still running");
        let with_end = replies.take();
        replies
            .add(&reply(1, ExecEvent::Stdout(b"more".to_vec())))
            .unwrap();
        assert!(replies.must_send(), "still running: live again");
        let alone = replies.take();
        assert!(with_end.len() > alone.len(), "engine 0's end went first");
        replies.add(&done(1)).unwrap();
        assert!(replies.must_send(), "the last end goes at once");
    }
}
