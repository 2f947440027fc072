//! A relayed `push --file`: the file leaves the daemon once, to the first
//! host of a chain, and each host passes the stream on to the next as it
//! arrives while writing its own copy. Every host reports to the daemon
//! on a stream of its own, so each one's outcome is its own: a host lost
//! mid-transfer fails alone, and the hosts after it ask the daemon to
//! feed them from where their stream stopped.

mod feed;
mod member;
mod plan;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;

use super::abort::Abort;
use super::transfer::{Failure, Outcome};
use crate::protocol::relay::{RelayFile, RelayPeer};
use crate::session::EnginePool;
use member::{Command, Event, Member, Push};
pub(super) use plan::members;

/// The shortest silence after which a peer connection counts as lost.
const MIN_PEER_TIMEOUT: Duration = Duration::from_secs(1);

/// One host of the chain: the engine that writes the copy, and how its
/// peers reach it.
pub(super) struct Host {
    pub(super) id: u32,
    pub(super) path: String,
    pub(super) peer: RelayPeer,
}

/// What a relayed push came to: each host's outcome, in order, and a
/// remark for stderr if some hosts could not be reached by their peers.
pub(super) struct Relayed {
    pub(super) outcomes: Vec<Outcome>,
    pub(super) remark: Option<String>,
}

/// How far a relayed push got.
pub(super) struct Progress {
    /// The bytes the slowest host still going has written.
    pub(super) slowest: AtomicU64,
    /// Every host's bytes together.
    pub(super) all: AtomicU64,
}

impl Progress {
    pub(super) fn new(slowest: u64) -> Progress {
        Progress {
            slowest: AtomicU64::new(slowest),
            all: AtomicU64::new(0),
        }
    }
}

/// Push `size` bytes of `local` through `hosts`, counting into `progress`.
pub(super) async fn push(
    pool: &Arc<EnginePool>,
    hosts: Vec<Host>,
    job: String,
    local: &Path,
    size: u64,
    progress: &Progress,
    abort: Abort,
) -> Relayed {
    let n = hosts.len();
    let transfer = {
        use ring::rand::{SecureRandom, SystemRandom};
        let mut bytes = [0u8; 8];
        SystemRandom::new()
            .fill(&mut bytes)
            .expect("the system random source works");
        u64::from_be_bytes(bytes)
    };
    let push = Arc::new(Push {
        pool: pool.clone(),
        job,
        local: local.to_path_buf(),
        size,
    });
    let (events, mut happened) = mpsc::unbounded_channel();
    let mut commands = Vec::new();
    let mut tasks = Vec::new();
    for (index, host) in hosts.iter().enumerate() {
        let peer_timeout = (pool.link_timeout(host.id) / 2).max(MIN_PEER_TIMEOUT);
        let request = RelayFile {
            id: host.id,
            path: host.path.clone(),
            transfer,
            upstream: plan::upstream(index).map(|up| hosts[up].peer.fingerprint.clone()),
            downstream: plan::downstream(index, n)
                .map(|down| hosts[down].peer.clone())
                .collect(),
            peer_timeout_ms: peer_timeout.as_millis() as u64,
        };
        let (command, commanded) = mpsc::unbounded_channel();
        let member = Member {
            index,
            request,
            commands: command.clone(),
            events: events.clone(),
        };
        commands.push(command);
        tasks.push(tokio::spawn(member.run(
            push.clone(),
            commanded,
            abort.clone(),
        )));
    }
    drop(events);

    let mut ready = vec![false; n];
    let mut ended = vec![false; n];
    let mut written = vec![0u64; n];
    let mut direct = BTreeMap::new();
    let mut started = false;
    while let Some(event) = happened.recv().await {
        match event {
            Event::Ready(i) => ready[i] = true,
            Event::Ended(i) => ended[i] = true,
            Event::Written(i, bytes) => written[i] = bytes,
            Event::NoPeer { member, why } => {
                direct.entry(member).or_insert(why);
            }
            Event::Unreachable { member, peer, why } => {
                let down = plan::downstream(member, n)
                    .nth(peer)
                    .expect("a downstream peer");
                let _ = commands[down].send(Command::Feed(0));
                direct.entry(down).or_insert(why);
            }
        }
        if !started && (0..n).all(|i| ready[i] || ended[i]) {
            // Every host is ready (or failed on its own): dial, and feed
            // directly each one whose upstream will never come.
            started = true;
            for i in (0..n).filter(|&i| ready[i]) {
                let _ = commands[i].send(Command::Dial);
                if plan::upstream(i).is_none_or(|up| !ready[up]) {
                    let _ = commands[i].send(Command::Feed(0));
                }
            }
        }
        let slowest = (0..n).filter(|&i| !ended[i]).map(|i| written[i]).min();
        progress
            .slowest
            .store(slowest.unwrap_or(size), Ordering::Relaxed);
        progress.all.store(written.iter().sum(), Ordering::Relaxed);
    }
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(
            task.await
                .unwrap_or_else(|e| Err(Failure::Lost(format!("internal error: {e}")))),
        );
    }
    let remark = (!direct.is_empty()).then(|| {
        let hosts: Vec<String> = direct
            .iter()
            .map(|(i, why)| format!("{} ({why})", pool.host_of(hosts[*i].id)))
            .collect();
        format!(
            "could not relay to {}: sent their copies directly; set relay = false for hosts \
             that cannot reach one another",
            hosts.join(", ")
        )
    });
    Relayed { outcomes, remark }
}
