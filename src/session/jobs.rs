//! Jobs: every verb that touches engines runs as a job, so it can be
//! aborted (Ctrl-C, `pcl abort`). An `--async` job records its replies,
//! already framed, so `pcl result` can replay them byte for byte through
//! the same renderer as the sync call.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::watch;

use crate::protocol::session::{JobInfo, JobState, Reply};

/// Recorded replies kept in memory across all jobs; beyond it the oldest
/// jobs' records move to files in the session directory.
pub(super) const MEMORY_BUDGET: usize = 64 << 20;

pub(crate) struct Jobs {
    dir: PathBuf,
    table: Mutex<Table>,
    in_memory: AtomicUsize,
}

/// Ids of sync calls start here: they are never shown, and keeping them
/// apart lets the user's async jobs count 1, 2, ... per session.
const FIRST_SYNC_ID: u64 = 1 << 63;

struct Table {
    next_async: u64,
    next_sync: u64,
    jobs: BTreeMap<u64, Arc<Job>>,
}

pub(crate) struct Job {
    pub id: u64,
    pub argv: Vec<String>,
    pub is_async: bool,
    started: Instant,
    state: Mutex<JobProgress>,
    done: watch::Sender<bool>,
    cancelled: watch::Sender<bool>,
}

/// What a job has done so far.
struct JobProgress {
    engines: Vec<u32>,
    finished: Option<f64>,
    aborted: bool,
    record: Record,
}

/// Where an async job's replies are, as length-prefixed frames.
pub(crate) enum Record {
    Memory(Vec<u8>),
    File(PathBuf),
    Dropped(String),
}

impl Jobs {
    pub(crate) fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            table: Mutex::new(Table {
                next_async: 1,
                next_sync: FIRST_SYNC_ID,
                jobs: BTreeMap::new(),
            }),
            in_memory: AtomicUsize::new(0),
        }
    }

    pub(crate) fn start(&self, argv: Vec<String>, is_async: bool) -> Arc<Job> {
        let mut table = self.table.lock().expect("lock");
        let next = if is_async {
            &mut table.next_async
        } else {
            &mut table.next_sync
        };
        let id = *next;
        *next += 1;
        let job = Arc::new(Job {
            id,
            argv,
            is_async,
            started: Instant::now(),
            state: Mutex::new(JobProgress {
                engines: Vec::new(),
                finished: None,
                aborted: false,
                record: Record::Memory(Vec::new()),
            }),
            done: watch::Sender::new(false),
            cancelled: watch::Sender::new(false),
        });
        table.jobs.insert(id, job.clone());
        job
    }

    pub(crate) fn get(&self, id: u64) -> Option<Arc<Job>> {
        self.table.lock().expect("lock").jobs.get(&id).cloned()
    }

    /// A sync call is forgotten when it ends; async jobs stay for `result`.
    pub(crate) fn finish(&self, job: &Job) {
        job.state.lock().expect("lock").finished = Some(job.started.elapsed().as_secs_f64());
        job.done.send_replace(true);
        if !job.is_async {
            self.table.lock().expect("lock").jobs.remove(&job.id);
        }
    }

    pub(crate) fn async_jobs(&self) -> Vec<Arc<Job>> {
        let table = self.table.lock().expect("lock");
        table
            .jobs
            .values()
            .filter(|j| j.is_async)
            .cloned()
            .collect()
    }

    /// Append one reply to an async job's record, then keep the memory
    /// budget by spilling the oldest records to disk.
    pub(crate) fn record(&self, job: &Job, reply: &Reply) -> std::io::Result<()> {
        let body = postcard::to_stdvec(reply).map_err(std::io::Error::other)?;
        let mut frame = Vec::with_capacity(4 + body.len());
        frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
        frame.extend_from_slice(&body);
        let added = {
            let mut state = job.state.lock().expect("lock");
            match &mut state.record {
                Record::Memory(bytes) => {
                    bytes.extend_from_slice(&frame);
                    frame.len()
                }
                Record::File(path) => {
                    let mut file = std::fs::OpenOptions::new().append(true).open(path)?;
                    file.write_all(&frame)?;
                    0
                }
                Record::Dropped(_) => 0,
            }
        };
        if self.in_memory.fetch_add(added, Ordering::SeqCst) + added > MEMORY_BUDGET {
            self.spill();
        }
        Ok(())
    }

    fn spill(&self) {
        let jobs: Vec<Arc<Job>> = self
            .table
            .lock()
            .expect("lock")
            .jobs
            .values()
            .cloned()
            .collect();
        for job in jobs {
            if self.in_memory.load(Ordering::SeqCst) <= MEMORY_BUDGET {
                return;
            }
            let mut state = job.state.lock().expect("lock");
            let Record::Memory(bytes) = &state.record else {
                continue;
            };
            let freed = bytes.len();
            let path = self.dir.join(format!("job-{}.replies", job.id));
            let written =
                std::fs::create_dir_all(&self.dir).and_then(|()| std::fs::write(&path, bytes));
            state.record = match written {
                Ok(()) => Record::File(path),
                Err(e) => Record::Dropped(format!(
                    "the output of job {} was dropped to keep the session's memory bounded \
                     ({} MiB), and could not be kept on disk: {e}",
                    job.id,
                    MEMORY_BUDGET >> 20
                )),
            };
            self.in_memory.fetch_sub(freed, Ordering::SeqCst);
        }
    }

    /// Where an async job keeps files until `pcl result` writes them out
    /// (`pull --file`); removed with the spill files.
    pub(crate) fn files_dir(&self, job: &Job) -> PathBuf {
        self.dir.join(format!("job-{}.files", job.id))
    }

    /// Remove the spill files (the daemon is stopping).
    pub(crate) fn remove_files(&self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Job {
    pub(crate) fn set_engines(&self, ids: &[u32]) {
        self.state.lock().expect("lock").engines = ids.to_vec();
    }

    pub(crate) fn engines(&self) -> Vec<u32> {
        self.state.lock().expect("lock").engines.clone()
    }

    pub(crate) fn abort(&self) {
        self.state.lock().expect("lock").aborted = true;
        self.cancelled.send_replace(true);
    }

    pub(crate) fn cancelled(&self) -> watch::Receiver<bool> {
        self.cancelled.subscribe()
    }

    pub(crate) async fn wait(&self) {
        let mut done = self.done.subscribe();
        let _ = done.wait_for(|d| *d).await;
    }

    /// A copy of the record (a finished job's record no longer changes).
    pub(crate) fn record(&self) -> Record {
        match &self.state.lock().expect("lock").record {
            Record::Memory(bytes) => Record::Memory(bytes.clone()),
            Record::File(path) => Record::File(path.clone()),
            Record::Dropped(why) => Record::Dropped(why.clone()),
        }
    }

    pub(crate) fn info(&self) -> JobInfo {
        let state = self.state.lock().expect("lock");
        // argv: pcl [--session S] VERB ARGS...
        let mut words = self.argv.iter().skip(1).peekable();
        while words.peek().is_some_and(|w| w.starts_with("--session")) {
            let w = words.next().expect("peeked");
            if w == "--session" {
                words.next();
            }
        }
        let words: Vec<&String> = words.collect();
        JobInfo {
            id: self.id,
            verb: words.first().map(|w| w.to_string()).unwrap_or_default(),
            command: words
                .iter()
                .map(|w| w.as_str())
                .collect::<Vec<_>>()
                .join(" "),
            state: match (state.finished, state.aborted) {
                (None, _) => JobState::Running,
                (Some(_), true) => JobState::Aborted,
                (Some(_), false) => JobState::Done,
            },
            engines: state.engines.clone(),
            elapsed_s: state
                .finished
                .unwrap_or_else(|| self.started.elapsed().as_secs_f64()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn async_jobs_count_from_one_whatever_sync_calls_ran() {
        let jobs = Jobs::new(std::env::temp_dir().join("unused"));
        let sync = jobs.start(Vec::new(), false);
        jobs.finish(&sync);
        let ids: Vec<u64> = (0..3).map(|_| jobs.start(Vec::new(), true).id).collect();
        assert_eq!(ids, [1, 2, 3]);
        assert_ne!(jobs.start(Vec::new(), false).id, 4);
    }

    #[test]
    fn records_spill_to_disk_beyond_the_budget() {
        let dir = tempfile::tempdir().unwrap();
        let jobs = Jobs::new(dir.path().join("jobs"));
        let first = jobs.start(vec!["pcl".into(), "px".into(), "x".into()], true);
        let second = jobs.start(vec!["pcl".into(), "px".into()], true);
        let big = Reply::Error("x".repeat(MEMORY_BUDGET / 2 + 1));
        jobs.record(&first, &big).unwrap();
        jobs.record(&second, &big).unwrap();
        assert!(matches!(first.record(), Record::File(_)));
        assert!(matches!(second.record(), Record::Memory(_)));
        jobs.record(&first, &Reply::Done).unwrap();
        let Record::File(path) = first.record() else {
            panic!()
        };
        let len = std::fs::metadata(path).unwrap().len() as usize;
        let Record::Memory(kept) = second.record() else {
            panic!()
        };
        assert_eq!(
            len,
            kept.len() + 4 + postcard::to_stdvec(&Reply::Done).unwrap().len()
        );
        assert_eq!(first.info().verb, "px");
        assert_eq!(first.info().command, "px x");
    }
}
