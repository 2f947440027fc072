//! Requests to one engine, each on a QUIC stream of its own, and why one
//! could not be made or answered.

use quinn::{Connection, RecvStream, SendStream};
use thiserror::Error;
use tokio::io::BufReader;

use super::{EngineCondition, EnginePool};
use crate::protocol::engine::{EngineReply, EngineRequest};
use crate::protocol::status;
use crate::transport::{
    TransportError, read_frame, take_buffered_frame, take_end_if_there, write_frame,
};

/// Why a call to an engine failed: every case is an engine the session
/// cannot reach now, and exits as one (`status()`).
#[derive(Debug, Clone, Error)]
pub(crate) enum PoolError {
    #[error("engine {id} is dead: {reason}")]
    Dead { id: u32, reason: String },
    #[error("engine {id} is not connected")]
    NotConnected { id: u32 },
    #[error("engine {id} unreachable: {why}")]
    Unreachable { id: u32, why: String },
    #[error("engine {id} died: {reason}")]
    Died { id: u32, reason: String },
    #[error("engine {id} lost: {why}")]
    Lost { id: u32, why: String },
}

impl PoolError {
    /// The exit status of an engine that could not take part.
    pub(crate) fn status(&self) -> i32 {
        status::UNREACHABLE
    }

    /// The same failure, said of engine `id` (one of the engines a
    /// request to several of a host's engines was for).
    pub(crate) fn of_engine(&self, id: u32) -> PoolError {
        let mut error = self.clone();
        match &mut error {
            PoolError::Dead { id: e, .. }
            | PoolError::NotConnected { id: e }
            | PoolError::Unreachable { id: e, .. }
            | PoolError::Died { id: e, .. }
            | PoolError::Lost { id: e, .. } => *e = id,
        }
        error
    }
}

impl EnginePool {
    fn connection(&self, id: u32) -> Result<Connection, PoolError> {
        let slot = &self.engines[id as usize];
        self.hosts[slot.host_index]
            .link()
            .connection()
            .ok_or(PoolError::NotConnected { id })
    }

    /// Send one request to engine `id` on a stream of its own; the engine
    /// shows as busy with `job` until the returned call is dropped.
    pub(crate) async fn call(
        &self,
        id: u32,
        job: &str,
        request: &EngineRequest,
    ) -> Result<EngineCall<'_>, PoolError> {
        let mut call = self.open(id, job, request).await?;
        let _ = call.send.finish();
        Ok(call)
    }

    /// Like `call`, but the send side stays open for the bulk frames that
    /// follow the request (`EngineCall::send`).
    pub(crate) async fn open(
        &self,
        id: u32,
        job: &str,
        request: &EngineRequest,
    ) -> Result<EngineCall<'_>, PoolError> {
        if let EngineCondition::Dead(reason) = self.state(id) {
            return Err(PoolError::Dead { id, reason });
        }
        let (send, recv) = self.start(&[id], job, request).await?;
        Ok(EngineCall {
            pool: self,
            id,
            send,
            recv: BufReader::new(recv),
        })
    }

    /// Send one request to several engines of one host (`ids`, every one
    /// on the host of the first, none dead) on a single stream; each shows
    /// as busy with `job` until its part is over (`HostCall::finished`)
    /// or the call is dropped.
    pub(crate) async fn call_each(
        &self,
        ids: &[u32],
        job: &str,
        request: &EngineRequest,
    ) -> Result<HostCall<'_>, PoolError> {
        let (mut send, recv) = self.start(ids, job, request).await?;
        let _ = send.finish();
        Ok(HostCall {
            pool: self,
            busy: ids.to_vec(),
            _send: send,
            recv: BufReader::new(recv),
        })
    }

    /// Open a stream on the host of `ids[0]`, send `request` on it, and
    /// mark the engines `ids` busy with `job`; failures are said of
    /// `ids[0]`.
    async fn start(
        &self,
        ids: &[u32],
        job: &str,
        request: &EngineRequest,
    ) -> Result<(SendStream, RecvStream), PoolError> {
        let id = ids[0];
        let connection = self.connection(id)?;
        let unreachable = |e: &dyn std::fmt::Display| PoolError::Unreachable {
            id,
            why: e.to_string(),
        };
        let (mut send, recv) = connection.open_bi().await.map_err(|e| unreachable(&e))?;
        write_frame(&mut send, request)
            .await
            .map_err(|e| unreachable(&e))?;
        for &id in ids {
            let mut state = self.engines[id as usize].state.lock().expect("lock");
            if *state == EngineCondition::Idle {
                *state = EngineCondition::Busy(job.to_string());
            }
        }
        Ok((send, recv))
    }

    /// Why a request to engine `id` ended early: its engine died, or the
    /// link to it was lost.
    fn cut_off(&self, id: u32, why: &dyn std::fmt::Display) -> PoolError {
        match self.state(id) {
            EngineCondition::Dead(reason) => PoolError::Died { id, reason },
            _ => PoolError::Lost {
                id,
                why: why.to_string(),
            },
        }
    }

    fn idle(&self, id: u32) {
        let mut state = self.engines[id as usize].state.lock().expect("lock");
        if matches!(*state, EngineCondition::Busy(_)) {
            *state = EngineCondition::Idle;
        }
    }

    /// Send a control request (an interrupt) to engine `id` and wait until
    /// the engine has acted on it; unlike `call`, the engine's state is
    /// left alone, since the command it interrupts still owns it.
    pub(crate) async fn control(&self, id: u32, request: &EngineRequest) -> Result<(), PoolError> {
        let connection = self.connection(id)?;
        let unreachable = |e: &dyn std::fmt::Display| PoolError::Unreachable {
            id,
            why: e.to_string(),
        };
        let (mut send, mut recv) = connection.open_bi().await.map_err(|e| unreachable(&e))?;
        write_frame(&mut send, request)
            .await
            .map_err(|e| unreachable(&e))?;
        let _ = send.finish();
        read_frame::<_, EngineReply>(&mut recv)
            .await
            .map_err(|e| unreachable(&e))?;
        Ok(())
    }
}

/// One request in flight to one engine.
pub(crate) struct EngineCall<'a> {
    pool: &'a EnginePool,
    id: u32,
    send: SendStream,
    recv: Replied,
}

/// A reply stream, read through a buffer: the replies of a round (map's
/// tasks, a host's engines) often come in one packet, and each read of
/// the stream itself takes the connection's lock.
type Replied = BufReader<RecvStream>;

impl EngineCall<'_> {
    /// The request's send side, for bulk frames after the request.
    pub(crate) fn send(&mut self) -> &mut SendStream {
        &mut self.send
    }

    /// The next reply; `Err` when the engine went away mid-request.
    pub(crate) async fn next(&mut self) -> Result<Option<EngineReply>, PoolError> {
        self.halves().1.next().await
    }

    /// The next reply if it has arrived whole already (with the one
    /// before it, say), without waiting.
    pub(crate) fn next_if_here(&mut self) -> Option<Result<EngineReply, PoolError>> {
        let reply = take_buffered_frame(&mut self.recv)?;
        Some(reply.map_err(|e| self.pool.cut_off(self.id, &e)))
    }

    /// The send side and the replies apart, for a caller that writes while
    /// it waits for replies (a reply read must never be cut short).
    pub(crate) fn halves(&mut self) -> (&mut SendStream, Replies<'_>) {
        let replies = Replies {
            pool: self.pool,
            id: self.id,
            recv: &mut self.recv,
        };
        (&mut self.send, replies)
    }
}

/// The replies of one [`EngineCall`].
pub(crate) struct Replies<'a> {
    pool: &'a EnginePool,
    id: u32,
    recv: &'a mut Replied,
}

impl Replies<'_> {
    /// The next reply; `Err` when the engine went away mid-request.
    pub(crate) async fn next(&mut self) -> Result<Option<EngineReply>, PoolError> {
        read_frame(&mut *self.recv)
            .await
            .map_err(|e| self.pool.cut_off(self.id, &e))
    }
}

impl Drop for EngineCall<'_> {
    fn drop(&mut self) {
        take_end_if_there(self.recv.get_mut());
        self.pool.idle(self.id);
    }
}

/// One request in flight to several engines of one host.
pub(crate) struct HostCall<'a> {
    pool: &'a EnginePool,
    /// The engines whose part is not over yet.
    busy: Vec<u32>,
    /// Kept so that the engine host's stream is not reset under it.
    _send: SendStream,
    recv: Replied,
}

impl HostCall<'_> {
    /// The next reply, whichever engine it is from; `Err` is why the
    /// engines whose part was not over get no more (`cut_off` for each).
    pub(crate) async fn next(&mut self) -> Result<Option<EngineReply>, TransportError> {
        read_frame(&mut self.recv).await
    }

    /// Engine `id`'s part is over: it is idle again.
    pub(crate) fn finished(&mut self, id: u32) {
        self.busy.retain(|&busy| busy != id);
        self.pool.idle(id);
    }

    /// Why engine `id` got no more, the stream having failed with `error`.
    pub(crate) fn cut_off(&self, id: u32, error: &TransportError) -> PoolError {
        self.pool.cut_off(id, error)
    }
}

impl Drop for HostCall<'_> {
    fn drop(&mut self) {
        take_end_if_there(self.recv.get_mut());
        for &id in &self.busy {
            self.pool.idle(id);
        }
    }
}
