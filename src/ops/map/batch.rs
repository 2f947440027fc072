//! One batch of a map on one engine, sent in its turn.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::Event;
use crate::protocol::engine::{BatchItem, EngineReply, EngineRequest};
use crate::protocol::verbs::MapRequest;
use crate::session::EnginePool;

/// A batch's place among its engine's: the engine takes its shell for
/// batches in the order their requests arrive, which must be the order
/// they were handed out (the runtime may start the task spawned last
/// first), so that one engine runs its items in input order.
pub(super) struct Turn {
    pub(super) nth: u64,
    pub(super) sent: Arc<watch::Sender<u64>>,
}

/// One batch on one engine: forward each result as it comes, then say
/// which items did not finish (engine lost, or the batch cancelled).
pub(super) async fn run_batch(
    pool: Arc<EnginePool>,
    engine: u32,
    request: Arc<MapRequest>,
    items: Vec<BatchItem>,
    turn: Turn,
    tx: mpsc::Sender<Event>,
) {
    // An engine runs a batch in order, so what did not finish is a tail.
    let seqs: Vec<u64> = items.iter().map(|i| i.seq).collect();
    let mut finished = 0;
    let mut worked = Duration::ZERO;
    let label = format!("map {}", request.command);
    let engine_request = EngineRequest::Batch {
        id: engine,
        template: request.command.clone(),
        items,
        timeout_ms: request.timeout_ms,
    };
    let _ = turn
        .sent
        .subscribe()
        .wait_for(|&sent| sent == turn.nth)
        .await;
    let call = pool.call(engine, &label, &engine_request).await;
    turn.sent.send_replace(turn.nth + 1);
    // The tasks of one round of the engine's come in one packet: they go
    // on as one event.
    let mut round = Vec::new();
    let error = match call {
        Err(e) => Some(e.to_string()),
        Ok(mut call) => loop {
            let reply = match call.next_if_here() {
                Some(reply) => reply.map(Some),
                None => {
                    if !round.is_empty()
                        && tx
                            .send(Event::Tasks(engine, std::mem::take(&mut round)))
                            .await
                            .is_err()
                    {
                        break None;
                    }
                    call.next().await
                }
            };
            match reply {
                Ok(Some(EngineReply::Task(end))) => {
                    finished += 1;
                    worked += Duration::from_millis(end.runtime_ms);
                    round.push(end);
                }
                Ok(Some(EngineReply::BatchDone)) => break None,
                Ok(Some(EngineReply::Error(e))) => break Some(e),
                Ok(Some(other)) => break Some(format!("unexpected reply {other:?}")),
                Ok(None) => break Some(format!("engine {engine} ended the batch early")),
                Err(e) => break Some(e.to_string()),
            }
        },
    };
    if !round.is_empty() {
        let _ = tx.send(Event::Tasks(engine, round)).await;
    }
    let _ = tx
        .send(Event::BatchEnd {
            engine,
            ran: finished,
            worked,
            unfinished: seqs[finished.min(seqs.len())..].to_vec(),
            error,
        })
        .await;
}
