//! `pcl map`: run a command once per item, load-balanced over the target
//! engines. Items are read as they are needed (from the request, a file,
//! or the CLI's socket), handed out in batches sized to each engine's
//! speed, and their results go back in input order through a bounded
//! reorder window. An engine lost mid-map has its unfinished items run
//! elsewhere.

mod batch;
mod input;
mod joblog;
mod reorder;
mod running;
mod worker;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use serde_bytes::ByteBuf;
use tokio::sync::mpsc;

use super::After;
use super::abort::Abort;
use crate::protocol::engine::{BatchItem, ExecOutcome, TaskEnd};
use crate::protocol::session::Reply;
use crate::protocol::verbs::{MapEnd, MapInput, MapRequest, MapTask};
use crate::session::{EngineCondition, EnginePool, ReplySink, SessionError};
use batch::{Turn, run_batch};
use input::Input;
use joblog::Joblog;
use reorder::Reorder;
use running::BySeq;
use worker::Worker;

/// Results that may wait for an earlier one, at most.
const WINDOW: u64 = 65_536;
/// Bytes of early results that may wait for a slow item before no new
/// item is started.
const HELD_BUDGET: usize = 64 << 20;
/// Batches in flight per engine: one running, one queued behind it, so the
/// engine never waits for the daemon.
const IN_FLIGHT: usize = 2;

struct Pending {
    seq: u64,
    item: Vec<u8>,
    runs: u32,
}

enum Event {
    /// Tasks that ended on an engine, in its order.
    Tasks(u32, Vec<TaskEnd>),
    BatchEnd {
        engine: u32,
        ran: usize,
        /// The run times of the tasks that ended, by the engine's clock,
        /// added up.
        worked: Duration,
        unfinished: Vec<u64>,
        error: Option<String>,
    },
}

pub(crate) async fn run(
    pool: &Arc<EnginePool>,
    request: MapRequest,
    out: &mut ReplySink,
) -> Result<After, SessionError> {
    let ids: Vec<u32> = out
        .targets(pool, &request.targets)?
        .into_iter()
        .filter(|&id| !matches!(pool.state(id), EngineCondition::Dead(_)))
        .collect();
    if ids.is_empty() {
        out.send(&Reply::Error("no live engine among the targets".into()))
            .await?;
        return Ok(After::Continue);
    }
    let input = Input::open(request.input.clone(), out.take_input()).await?;
    if let Some(total) = input.total {
        out.send(&Reply::MapTotal(total)).await?;
    }
    let joblog = match &request.joblog {
        Some(path) => Some(Joblog::open(path, request.joblog_append)?),
        None => None,
    };
    let cancel = Abort::of(out);
    let mut map = Map {
        pool: pool.clone(),
        request: Arc::new(request),
        workers: ids.iter().map(|&id| Worker::new(id)).collect(),
        items: input.items,
        total: input.total,
        live: ids.len(),
        source_done: false,
        next_seq: 0,
        queue: VecDeque::new(),
        running: BySeq::default(),
        reorder: Reorder::new(WINDOW, HELD_BUDGET),
        joblog,
        end: MapEnd {
            done: 0,
            failed: 0,
            unrun: 0,
            aborted: false,
        },
    };
    map.run(out, cancel).await?;
    Ok(After::Continue)
}

struct Map {
    pool: Arc<EnginePool>,
    request: Arc<MapRequest>,
    workers: Vec<Worker>,
    items: mpsc::Receiver<Result<Vec<u8>, String>>,
    /// How many items the input holds, when that is known beforehand.
    total: Option<u64>,
    /// Workers still alive.
    live: usize,
    source_done: bool,
    next_seq: u64,
    /// Items ready to go: read ahead, or back from a lost engine or a retry.
    queue: VecDeque<Pending>,
    /// Items sent to an engine and not finished.
    running: BySeq<Pending>,
    reorder: Reorder<MapTask>,
    joblog: Option<Joblog>,
    end: MapEnd,
}

impl Map {
    async fn run(&mut self, out: &mut ReplySink, mut cancel: Abort) -> Result<(), SessionError> {
        let (tx, mut rx) = mpsc::channel::<Event>(4096);
        let mut input_error = None;
        loop {
            if !self.end.aborted {
                self.dispatch(&tx);
            }
            let in_flight: usize = self.workers.iter().map(|w| w.in_flight).sum();
            let any_alive = self.workers.iter().any(|w| w.alive);
            let exhausted = self.source_done && self.queue.is_empty();
            if in_flight == 0 && (exhausted || self.end.aborted || !any_alive) {
                break;
            }
            // Read more input only when an engine could take it now.
            let wants_input = !self.source_done
                && !self.end.aborted
                && self.queue.is_empty()
                && self.window_open()
                && self
                    .workers
                    .iter()
                    .any(|w| w.alive && w.in_flight < IN_FLIGHT);
            tokio::select! {
                event = rx.recv() => {
                    let event = event.expect("the map holds a sender");
                    self.handle(event, out).await?;
                    // Results come in bursts (an engine sends a round of
                    // tasks at once): their replies go out in one write.
                    while let Ok(event) = rx.try_recv() {
                        self.handle(event, out).await?;
                    }
                    out.flush().await?;
                }
                item = self.items.recv(), if wants_input => match item {
                    Some(Ok(item)) => self.push_new(item),
                    Some(Err(e)) => {
                        input_error = Some(e);
                        self.source_done = true;
                    }
                    None => self.source_done = true,
                },
                () = cancel.wait(), if !self.end.aborted => {
                    self.end.aborted = true;
                }
            }
        }
        // Whatever was never run: queued, still unread, or stranded when
        // every engine was lost.
        self.end.unrun += self.queue.len() as u64;
        self.queue.clear();
        if !self.source_done {
            self.items.close();
            while let Some(item) = self.items.recv().await {
                if item.is_ok() {
                    self.end.unrun += 1;
                }
            }
        }
        for task in self.reorder.drain() {
            out.queue(&Reply::Task(task)).await?;
        }
        if let Some(joblog) = &mut self.joblog {
            joblog.flush()?;
        }
        if let Some(e) = input_error {
            out.send(&Reply::Error(format!("reading the items failed: {e}")))
                .await?;
            return Ok(());
        }
        out.send(&Reply::MapEnd(self.end.clone())).await?;
        out.send(&Reply::Done).await?;
        Ok(())
    }

    fn window_open(&self) -> bool {
        self.request.unordered || self.reorder.admits(self.next_seq)
    }

    fn push_new(&mut self, item: Vec<u8>) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.queue.push_back(Pending { seq, item, runs: 0 });
    }

    /// The most a batch may take now (see `share`).
    fn share(&self) -> usize {
        match self.total {
            Some(total) => {
                let left = total.saturating_sub(self.next_seq) + self.queue.len() as u64;
                share(left, self.live)
            }
            None => usize::MAX,
        }
    }

    /// Give every engine with room a batch, sized to its speed: first one
    /// batch each, then the second, so a short input spreads over all.
    fn dispatch(&mut self, tx: &mpsc::Sender<Event>) {
        for round in 0..IN_FLIGHT {
            for w in 0..self.workers.len() {
                let worker = &self.workers[w];
                if !worker.alive || worker.in_flight > round {
                    continue;
                }
                let size = worker.batch.min(self.share());
                // A busy engine waits for a full batch (unless the input
                // has ended): many small batches cost more than they help.
                let available = self.queue.len() + self.items.len();
                if worker.in_flight > 0 && !self.source_done && available < size {
                    continue;
                }
                let mut batch = Vec::with_capacity(size);
                while batch.len() < size {
                    if self.queue.is_empty() && self.window_open() {
                        // Take input that is already read, without waiting.
                        match self.items.try_recv() {
                            Ok(Ok(item)) => self.push_new(item),
                            _ => break,
                        }
                    }
                    let Some(p) = self.queue.pop_front() else {
                        break;
                    };
                    batch.push(BatchItem {
                        seq: p.seq,
                        item: p.item.clone(),
                    });
                    self.running.insert(p.seq, p);
                }
                if batch.is_empty() {
                    return;
                }
                let worker = &mut self.workers[w];
                worker.in_flight += 1;
                let turn = Turn {
                    nth: worker.handed_out,
                    sent: worker.sent.clone(),
                };
                worker.handed_out += 1;
                tokio::spawn(run_batch(
                    self.pool.clone(),
                    worker.id,
                    self.request.clone(),
                    batch,
                    turn,
                    tx.clone(),
                ));
            }
        }
    }

    async fn handle(&mut self, event: Event, out: &mut ReplySink) -> Result<(), SessionError> {
        match event {
            Event::Tasks(engine, ends) => {
                for end in ends {
                    self.task_ended(engine, end, out).await?;
                }
            }
            Event::BatchEnd {
                engine,
                ran,
                worked,
                unfinished,
                error,
            } => {
                let worker = self.worker(engine);
                worker.in_flight -= 1;
                worker.learn(ran, worked);
                if let Some(reason) = error {
                    // Lost (or refusing) engine: no more work for it here.
                    if worker.alive {
                        worker.alive = false;
                        self.live -= 1;
                        eprintln!("map: engine {engine} dropped out: {reason}");
                    }
                }
                for seq in unfinished.into_iter().rev() {
                    let Some(pending) = self.running.remove(&seq) else {
                        continue;
                    };
                    if self.end.aborted {
                        self.end.unrun += 1;
                        self.reorder.skip(seq);
                    } else {
                        self.queue.push_front(pending);
                    }
                }
            }
        }
        Ok(())
    }

    /// One task's end: retried, or counted, logged and passed on in its
    /// turn.
    async fn task_ended(
        &mut self,
        engine: u32,
        end: TaskEnd,
        out: &mut ReplySink,
    ) -> Result<(), SessionError> {
        let Some(mut pending) = self.running.remove(&end.seq) else {
            return Ok(());
        };
        pending.runs += 1;
        let host = self.pool.host_of(engine);
        let status = end.end.status;
        if status != 0 && pending.runs < self.request.retries && !self.end.aborted {
            self.queue.push_front(pending);
            return Ok(());
        }
        // One row per item, its last run's, as parallel writes.
        if let Some(joblog) = &mut self.joblog {
            let label = if self.pool.is_local(engine) {
                joblog::LOCAL_HOST
            } else {
                &host
            };
            joblog.row(label, &self.request.command, &pending.item, &end)?;
        }
        self.end.done += 1;
        if status != 0 {
            self.end.failed += 1;
        }
        let note = match end.end.outcome {
            ExecOutcome::Finished => None,
            ExecOutcome::TimedOut => Some(format!(
                "timed out after {} s and was killed",
                self.request.timeout_ms.unwrap_or(0) as f64 / 1000.0
            )),
            ExecOutcome::ShellRestarted(why) => Some(why),
        };
        let task = MapTask {
            seq: end.seq,
            item: ByteBuf::from(pending.item),
            engine,
            host,
            status,
            note,
            stdout: ByteBuf::from(end.stdout),
            stderr: ByteBuf::from(end.stderr),
        };
        if self.request.unordered {
            out.queue(&Reply::Task(task)).await?;
        } else {
            let size = task.stdout.len() + task.stderr.len() + task.item.len();
            self.reorder.insert(end.seq, task, size);
            while let Some(task) = self.reorder.pop() {
                out.queue(&Reply::Task(task)).await?;
            }
        }
        Ok(())
    }

    fn worker(&mut self, engine: u32) -> &mut Worker {
        self.workers
            .iter_mut()
            .find(|w| w.id == engine)
            .expect("results come from the map's engines")
    }
}

/// With the input's length known, no batch takes more than half of an
/// even share of the `left` items not handed out yet: the end of the
/// input is spread over every engine in ever smaller batches, as guided
/// self-scheduling does, instead of waiting on one engine's long one.
fn share(left: u64, live: usize) -> usize {
    left.div_ceil(2 * live.max(1) as u64).max(1) as usize
}

#[cfg(test)]
mod tests {
    use super::share;
    use super::worker::MAX_BATCH;
    #[test]
    fn the_end_of_a_known_input_goes_to_every_engine_in_small_batches() {
        // Four fast engines, each learned to take the largest batch, take
        // turns on the last 100 items.
        let mut left = 100u64;
        let mut taken = [0u64; 4];
        let mut sizes = Vec::new();
        'hand_out: loop {
            for engine in &mut taken {
                if left == 0 {
                    break 'hand_out;
                }
                let size = MAX_BATCH.min(share(left, 4)) as u64;
                sizes.push(size);
                *engine += size;
                left -= size;
            }
        }
        assert_eq!(taken.iter().sum::<u64>(), 100);
        assert!(taken.iter().all(|&t| (20..=30).contains(&t)), "{taken:?}");
        assert_eq!(sizes[0], 13, "half of an even share of 100 over 4");
        assert!(sizes.windows(2).all(|w| w[0] >= w[1]), "{sizes:?}");
        assert_eq!(sizes.last(), Some(&1));
    }

    #[test]
    fn a_share_is_never_empty() {
        assert_eq!(share(0, 4), 1);
        assert_eq!(share(1, 1000), 1);
        assert_eq!(share(10, 0), 5, "no engine left counts as one");
    }
}
