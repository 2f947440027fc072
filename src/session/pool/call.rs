//! Requests to one engine, each on a QUIC stream of its own, and why one
//! could not be made or answered.

use quinn::{Connection, RecvStream, SendStream};
use thiserror::Error;

use super::{EngineCondition, EnginePool};
use crate::protocol::engine::{EngineReply, EngineRequest};
use crate::protocol::status;
use crate::transport::{read_frame, write_frame};

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
        let connection = self.connection(id)?;
        let unreachable = |e: &dyn std::fmt::Display| PoolError::Unreachable {
            id,
            why: e.to_string(),
        };
        let (mut send, recv) = connection.open_bi().await.map_err(|e| unreachable(&e))?;
        write_frame(&mut send, request)
            .await
            .map_err(|e| unreachable(&e))?;
        {
            let mut state = self.engines[id as usize].state.lock().expect("lock");
            if *state == EngineCondition::Idle {
                *state = EngineCondition::Busy(job.to_string());
            }
        }
        Ok(EngineCall {
            pool: self,
            id,
            send,
            recv,
        })
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
    recv: RecvStream,
}

impl EngineCall<'_> {
    /// The request's send side, for bulk frames after the request.
    pub(crate) fn send(&mut self) -> &mut SendStream {
        &mut self.send
    }

    /// The next reply; `Err` when the engine went away mid-request.
    pub(crate) async fn next(&mut self) -> Result<Option<EngineReply>, PoolError> {
        self.halves().1.next().await
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
    recv: &'a mut RecvStream,
}

impl Replies<'_> {
    /// The next reply; `Err` when the engine went away mid-request.
    pub(crate) async fn next(&mut self) -> Result<Option<EngineReply>, PoolError> {
        read_frame(&mut *self.recv)
            .await
            .map_err(|e| match self.pool.state(self.id) {
                EngineCondition::Dead(reason) => PoolError::Died {
                    id: self.id,
                    reason,
                },
                _ => PoolError::Lost {
                    id: self.id,
                    why: e.to_string(),
                },
            })
    }
}

impl Drop for EngineCall<'_> {
    fn drop(&mut self) {
        let mut state = self.pool.engines[self.id as usize]
            .state
            .lock()
            .expect("lock");
        if matches!(*state, EngineCondition::Busy(_)) {
            *state = EngineCondition::Idle;
        }
    }
}
