//! Process-table work for a shell's session. Each shell is a session
//! leader, and with job control on every command it runs gets its own
//! process group inside that session: so the command's groups can be
//! signalled without touching the shell, and everything the shell ever
//! started can be found and killed.

use std::collections::BTreeSet;

/// (pid, process group) of every process in session `sid`.
fn session_members(sid: i32) -> Vec<(i32, i32)> {
    members_of(&[sid])
}

/// (pid, process group) of every process in any of the sessions `sids`,
/// in one pass over /proc.
fn members_of(sids: &[i32]) -> Vec<(i32, i32)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|entry| {
        let pid: i32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the command name, which may itself hold spaces or ')'.
        let rest = &stat[stat.rfind(')')? + 2..];
        let mut fields = rest.split(' ');
        let _state = fields.next()?;
        let _ppid = fields.next()?;
        let pgrp: i32 = fields.next()?.parse().ok()?;
        let session: i32 = fields.next()?.parse().ok()?;
        sids.contains(&session).then_some((pid, pgrp))
    })
    .collect()
}

/// Signal every process group of the session except the shell's own.
/// Returns how many groups were signalled.
pub fn signal_jobs(shell_pid: i32, signal: i32) -> usize {
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
pub fn kill_session(shell_pid: i32) {
    kill_sessions(&[shell_pid]);
}

/// SIGKILL these shells and everything in their sessions. One pass over
/// /proc for all of them: an engine host stopping many shells on a busy
/// machine would otherwise read the process table once per shell.
pub fn kill_sessions(shell_pids: &[i32]) {
    for (pid, _) in members_of(shell_pids) {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}
