//! Process-table work for a shell's session. Each shell is a session
//! leader, and with job control on every command it runs gets its own
//! process group inside that session: so the command's groups can be
//! signalled without touching the shell, and everything the shell ever
//! started can be found and killed.

use std::collections::{BTreeSet, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

/// Set once this process is the reaper of its descendants' orphans.
static SUBREAPER: AtomicBool = AtomicBool::new(false);

/// (pid, process group) of every process in session `sid`.
fn session_members(sid: i32) -> Vec<(i32, i32)> {
    members_of(&[sid])
}

/// (pid, process group) of every process in any of the sessions `sids`.
/// A subreaper (the engine host) reads only its own process tree: every
/// process of its shells' sessions is in it, orphans included. Reading
/// the whole process table instead made each engine host's stop cost in
/// proportion to every process of the machine, which many engine hosts on
/// one machine pay many times over. Anyone else (the guard, after its
/// engine host is gone) reads all of /proc.
fn members_of(sids: &[i32]) -> Vec<(i32, i32)> {
    if sids.is_empty() {
        return Vec::new();
    }
    let pids = if SUBREAPER.load(Ordering::SeqCst) {
        descendants()
    } else {
        all_pids()
    };
    pids.into_iter()
        .filter_map(|pid| {
            let (_, pgrp, session) = stat_fields(pid)?;
            sids.contains(&session).then_some((pid, pgrp))
        })
        .collect()
}

fn all_pids() -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// Every descendant of this process, children first.
fn descendants() -> Vec<i32> {
    let mut found = children_of("self");
    let mut next = 0;
    while next < found.len() {
        let kids = children_of(&found[next].to_string());
        found.extend(kids);
        next += 1;
    }
    found
}

/// State letter, process group and session of `pid`.
fn stat_fields(pid: i32) -> Option<(char, i32, i32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which may itself hold spaces or ')'.
    let mut fields = stat[stat.rfind(')')? + 2..].split(' ');
    let state = fields.next()?.chars().next()?;
    let _ppid = fields.next()?;
    let pgrp = fields.next()?.parse().ok()?;
    let session = fields.next()?.parse().ok()?;
    Some((state, pgrp, session))
}

/// Signal every process group of the session except the shell's own.
/// Returns how many groups were signalled.
pub(super) fn signal_jobs(shell_pid: i32, signal: i32) -> usize {
    let groups: BTreeSet<i32> = session_members(shell_pid)
        .into_iter()
        .map(|(_, pgrp)| pgrp)
        .filter(|&pgrp| pgrp != shell_pid)
        .collect();
    for &pgrp in &groups {
        // SAFETY: killpg has no memory-safety preconditions.
        unsafe { libc::killpg(pgrp, signal) };
    }
    groups.len()
}

/// SIGKILL the shell and everything in its session.
pub(super) fn kill_session(shell_pid: i32) {
    kill_sessions(&[shell_pid]);
}

/// SIGKILL these shells and everything in their sessions. One pass over
/// /proc for all of them: an engine host stopping many shells on a busy
/// machine would otherwise read the process table once per shell.
pub(super) fn kill_sessions(shell_pids: &[i32]) {
    for (pid, _) in members_of(shell_pids) {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

/// Pids this engine host spawned itself (shells, the guard), whose exit
/// statuses belong to their own waiters; every other child was adopted.
fn spawned() -> &'static Mutex<HashSet<i32>> {
    static SPAWNED: OnceLock<Mutex<HashSet<i32>>> = OnceLock::new();
    SPAWNED.get_or_init(Default::default)
}

/// Spawn a child and record it as ours, in one step: the reaper of
/// adopted orphans must never take a status that a waiter expects.
pub(super) fn spawn_recorded<C>(
    spawn: impl FnOnce() -> std::io::Result<C>,
    pid: impl Fn(&C) -> i32,
) -> std::io::Result<C> {
    let mut spawned = spawned().lock().expect("spawned lock");
    let child = spawn()?;
    spawned.insert(pid(&child));
    Ok(child)
}

/// `pid` was waited for (or never will be): it is no longer ours.
pub(super) fn forget_spawned(pid: i32) {
    spawned().lock().expect("spawned lock").remove(&pid);
}

/// Make this process the reaper of every orphan among its descendants: a
/// command that escapes its shell (`setsid`, `nohup ... &`, a double fork,
/// `disown`) becomes our child instead of init's, so it can be ended with
/// the engine host.
pub(super) fn become_subreaper() -> std::io::Result<()> {
    // SAFETY: prctl with these arguments only sets a flag of this process.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    SUBREAPER.store(true, Ordering::SeqCst);
    Ok(())
}

/// Direct children of this process, from every thread's list.
fn children() -> Vec<i32> {
    children_of("self")
}

/// Direct children of process `pid` (a number, or `self`), from every
/// thread's list.
fn children_of(pid: &str) -> Vec<i32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut kids = Vec::new();
    for task in tasks.flatten() {
        if let Ok(list) = std::fs::read_to_string(task.path().join("children")) {
            kids.extend(
                list.split_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok()),
            );
        }
    }
    kids
}

/// Reap adopted orphans that have ended, and return the sessions of those
/// still running (for the guard, which must end them if we are killed).
pub(super) fn reap_adopted() -> Vec<i32> {
    let spawned = spawned().lock().expect("spawned lock");
    let mut sessions = Vec::new();
    for pid in children() {
        if spawned.contains(&pid) {
            continue;
        }
        match stat_fields(pid).map(|(state, _, session)| (state, session)) {
            Some(('Z', _)) | None => {
                // SAFETY: waitpid on our own child, which no one else waits for.
                unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
            }
            Some((_, session)) => sessions.push(session),
        }
    }
    sessions
}

/// SIGKILL every descendant but `spare`, round after round: each one
/// killed hands its own children to us (we are their subreaper), until
/// none is left (true) or a few seconds have passed (false).
pub(super) fn kill_descendants(spare: &[i32]) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    while std::time::Instant::now() < deadline {
        let kids: Vec<i32> = children()
            .into_iter()
            .filter(|pid| !spare.contains(pid))
            .collect();
        if kids.is_empty() {
            return true;
        }
        for &pid in &kids {
            // SAFETY: kill and waitpid on our own children.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG);
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    false
}
