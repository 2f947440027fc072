//! One engine's part in a map: its batches in flight, and the size of
//! its next one.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

/// A batch should keep its engine busy about this long: each batch costs
/// a request, a stream and a sourced script, and its results come in
/// rounds of reading (see the engine's batch), so longer batches cost the
/// daemon less per task. Near the end of a known input batches shrink
/// (`Map::share`), so the engines still finish together. Where many
/// engines share few cores a task takes long in wall time, so batches sized
/// by it are short: at 256 engines on two cores, 200 ms gave batches of one
/// or two tasks, and 500 ms cut every part's CPU per task by about 40%
/// (`HOSTS=64 PER_HOST=4 bench/map.sh`). A slow engine holds at most two
/// batches (`IN_FLIGHT`) that the others cannot take. The time counted is
/// the tasks' own (see `Worker::learn`).
const BATCH_TARGET: Duration = Duration::from_millis(500);
pub(super) const MAX_BATCH: usize = 1024;

pub(super) struct Worker {
    pub(super) id: u32,
    pub(super) alive: bool,
    pub(super) in_flight: usize,
    pub(super) batch: usize,
    /// Smoothed time per task, measured per batch.
    per_task: Option<Duration>,
    /// Batches handed out so far, and how many of them have been sent:
    /// each batch is sent in its turn (see `run_batch`).
    pub(super) handed_out: u64,
    pub(super) sent: Arc<watch::Sender<u64>>,
}

impl Worker {
    /// An engine that has run nothing yet: its first batch is one task.
    pub(super) fn new(id: u32) -> Worker {
        Worker {
            id,
            alive: true,
            in_flight: 0,
            batch: 1,
            per_task: None,
            handed_out: 0,
            sent: Arc::new(watch::Sender::new(0)),
        }
    }

    /// A batch's `ran` tasks took `worked` on the engine, their run times
    /// added up: its time per task sizes the next batches. The time between batches is left out: where many engines
    /// share few cores it was most of the wall time (at 256 engines on two
    /// cores, tasks of 20 ms ended about 350 ms apart), so batches sized
    /// by it stayed at one task, and each task paid for a whole batch.
    pub(super) fn learn(&mut self, ran: usize, worked: Duration) {
        if ran == 0 {
            return;
        }
        let sample = worked / ran as u32;
        let smooth = match self.per_task {
            Some(old) => (old + sample) / 2,
            None => sample,
        };
        self.per_task = Some(smooth);
        let fit = (BATCH_TARGET.as_secs_f64() / smooth.as_secs_f64().max(1e-6)) as usize;
        self.batch = fit.clamp(1, (self.batch * 2).min(MAX_BATCH));
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{BATCH_TARGET, MAX_BATCH, Worker};

    #[test]
    fn batches_of_short_tasks_grow_to_the_target_however_far_apart_batches_run() {
        // Tasks of 20 ms each, whatever the wall time between batches (on
        // an oversubscribed machine, ten times the tasks' own): batches
        // double up to about 500 ms of tasks.
        let mut w = Worker::new(0);
        let mut sizes = Vec::new();
        for _ in 0..8 {
            let ran = w.batch;
            w.learn(ran, Duration::from_millis(20) * ran as u32);
            sizes.push(w.batch);
        }
        assert_eq!(sizes[..4], [2, 4, 8, 16], "doubling: {sizes:?}");
        let fit = (BATCH_TARGET.as_millis() / 20) as usize;
        assert_eq!(w.batch, fit, "{sizes:?}");
    }

    #[test]
    fn long_tasks_go_one_at_a_time_and_tiny_ones_stop_at_the_cap() {
        let mut slow = Worker::new(0);
        slow.learn(1, Duration::from_secs(30));
        slow.learn(1, Duration::from_secs(30));
        assert_eq!(slow.batch, 1);
        // A batch whose tasks ended within the engine clock's millisecond.
        let mut fast = Worker::new(0);
        for _ in 0..20 {
            let ran = fast.batch;
            fast.learn(ran, Duration::ZERO);
        }
        assert_eq!(fast.batch, MAX_BATCH);
        // A batch in which no task ended teaches nothing.
        fast.learn(0, Duration::from_secs(60));
        assert_eq!(fast.batch, MAX_BATCH);
    }
}
