//! The processes of a session, found by scanning `/proc`.

use super::*;

/// A process found in /proc.
#[derive(Clone, Debug)]
pub struct Proc {
    pub pid: i32,
    pub ppid: i32,
    pub state: char,
    pub argv: Vec<String>,
    /// Why it belongs to the session.
    pub reason: &'static str,
}

pub(crate) fn read_argv(pid: i32) -> Vec<String> {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            b.split(|&c| c == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

pub(crate) fn read_stat(pid: i32) -> Option<(char, i32)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm may contain spaces and parens: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut f = rest.split_whitespace();
    let state = f.next()?.chars().next()?;
    let ppid = f.next()?.parse().ok()?;
    Some((state, ppid))
}

pub(crate) fn all_pids() -> Vec<i32> {
    let mut v: Vec<i32> = fs::read_dir("/proc")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    v.sort_unstable();
    v
}

/// Whether argv carries `--session NAME` (also inside a single shell
/// command string, as in `ssh host 'exec pcl engine --session NAME'`).
pub(crate) fn argv_names_session(argv: &[String], session: &str) -> bool {
    let tokens: Vec<&str> = argv
        .iter()
        .flat_map(|a| a.split_whitespace())
        .map(|t| t.trim_matches(|c| c == '\'' || c == '"'))
        .collect();
    let eq = format!("--session={session}");
    tokens
        .windows(2)
        .any(|w| w[0] == "--session" && w[1] == session)
        || tokens.iter().any(|t| *t == eq)
}

pub(crate) fn argv_exact_session(argv: &[String], session: &str) -> bool {
    let eq = format!("--session={session}");
    argv.windows(2)
        .any(|w| w[0] == "--session" && w[1] == session)
        || argv.contains(&eq)
}

pub(crate) fn environ_has_session(pid: i32, session: &str) -> bool {
    let want = format!("PCL_SESSION={session}");
    fs::read(format!("/proc/{pid}/environ"))
        .map(|b| b.split(|&c| c == 0).any(|e| e == want.as_bytes()))
        .unwrap_or(false)
}

/// Every live process on the machine that belongs to `session`: argv names
/// `--session NAME` (daemon, engine hosts, ssh tethers) or the environment
/// has `PCL_SESSION=NAME` (shells and their children). Zombies and this
/// test process are ignored.
pub fn session_processes(session: &str) -> Vec<Proc> {
    let me = std::process::id() as i32;
    let mut found = Vec::new();
    for pid in all_pids() {
        if pid == me {
            continue;
        }
        let Some((state, ppid)) = read_stat(pid) else {
            continue;
        };
        if state == 'Z' || state == 'X' {
            continue;
        }
        let argv = read_argv(pid);
        let reason = if argv_names_session(&argv, session) {
            "argv has --session"
        } else if environ_has_session(pid, session) {
            "environ has PCL_SESSION"
        } else {
            continue;
        };
        found.push(Proc {
            pid,
            ppid,
            state,
            argv,
            reason,
        });
    }
    found
}

pub fn format_procs(procs: &[Proc]) -> String {
    procs
        .iter()
        .map(|p| {
            format!(
                "  pid {} ppid {} state {} [{}]: {}",
                p.pid,
                p.ppid,
                p.state,
                p.reason,
                p.argv.join(" ")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Fail unless every process of `session` is gone (after a grace period of
/// [`LEFTOVER_GRACE`]).
#[track_caller]
pub fn assert_nothing_left(session: &str) {
    let deadline = Instant::now() + LEFTOVER_GRACE;
    loop {
        let left = session_processes(session);
        if left.is_empty() {
            return;
        }
        if Instant::now() >= deadline {
            panic!(
                "processes of session {session} still running {LEFTOVER_GRACE:?} after it \
                 should have stopped:\n{}",
                format_procs(&left)
            );
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Pids of the session's engine host processes (`pcl engine ... --session NAME`).
pub fn engine_pids(session: &str) -> Vec<i32> {
    all_pids()
        .into_iter()
        .filter(|&pid| {
            let argv = read_argv(pid);
            argv.iter().skip(1).any(|a| a == "engine") && argv_exact_session(&argv, session)
        })
        .collect()
}

/// A `/proc/PID/status` field in KiB (`VmHWM`, `VmPeak`).
pub fn status_kib(pid: i32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("a status field")
}

/// Pid of the session daemon (`pcl session serve --session NAME`).
pub fn daemon_pids(session: &str) -> Vec<i32> {
    all_pids()
        .into_iter()
        .filter(|&pid| {
            let argv = read_argv(pid);
            argv.iter().skip(1).any(|a| a == "session")
                && !argv.iter().skip(1).any(|a| a == "engine")
                && argv_exact_session(&argv, session)
        })
        .collect()
}

/// The executable of a process (`/proc/PID/exe`).
pub fn proc_exe(pid: i32) -> Option<PathBuf> {
    fs::read_link(format!("/proc/{pid}/exe")).ok()
}

/// Parent pids of `pid`, nearest first, up to init.
pub fn ancestors(pid: i32) -> Vec<i32> {
    let mut v = Vec::new();
    let mut cur = pid;
    while let Some((_, ppid)) = read_stat(cur) {
        if ppid <= 0 || v.contains(&ppid) {
            break;
        }
        v.push(ppid);
        cur = ppid;
    }
    v
}

/// Name of the network namespace `pid` is in (`ip netns identify`), empty
/// for the root namespace.
pub fn netns_of(pid: i32) -> String {
    sh("ip", &["netns", "identify", &pid.to_string()])
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Direct children of `pid`.
pub fn children_of(pid: i32) -> Vec<i32> {
    all_pids()
        .into_iter()
        .filter(|&p| read_stat(p).is_some_and(|(s, ppid)| ppid == pid && s != 'Z'))
        .collect()
}

/// Poll `cond` every 50 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(50));
    }
}
