//! Nothing a command starts outlives its session, nothing a dead engine
//! host was writing stays on disk, and nothing a command does to its
//! shell's descriptors cuts the engine off from that shell.

mod common;

use common::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Live processes whose argv holds `needle`.
fn running(needle: &str) -> Vec<i32> {
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let zombie = stat
                .rfind(')')
                .is_some_and(|i| stat[i + 2..].starts_with('Z'));
            let argv = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            !zombie
                && String::from_utf8_lossy(&argv)
                    .replace('\0', " ")
                    .contains(needle)
        })
        .collect()
}

#[test]
fn commands_that_escape_their_shell_end_with_pcl_down() {
    let env = Env::new();
    env.up([env.cluster_local(2)]);
    // A distinct sleep length per way out, so each is found by its argv.
    let base = 7000 + std::process::id() % 1000 * 10;
    let ways = [
        (
            "setsid",
            format!("setsid sleep {} >/dev/null 2>&1 </dev/null &", base + 1),
        ),
        (
            "nohup",
            format!("nohup sleep {} >/dev/null 2>&1 &", base + 2),
        ),
        (
            "double fork",
            format!("( sleep {} >/dev/null 2>&1 & )", base + 3),
        ),
        (
            "disown",
            format!("sleep {} >/dev/null 2>&1 & disown", base + 4),
        ),
        (
            "setsid, then a fork that outlives its parent",
            format!(
                "( setsid bash -c 'sleep {} & exit' >/dev/null 2>&1 & )",
                base + 5
            ),
        ),
    ];
    for (_, command) in &ways {
        env.px([command]).success();
    }
    for (i, (how, _)) in ways.iter().enumerate() {
        let needle = format!("sleep {}", base + 1 + i as u32);
        assert!(
            wait_until(Duration::from_secs(5), || running(&needle).len() == 2),
            "{how}: expected one `{needle}` per engine before down, found {:?}",
            running(&needle)
        );
    }
    env.down();
    for (i, (how, _)) in ways.iter().enumerate() {
        let needle = format!("sleep {}", base + 1 + i as u32);
        assert!(
            wait_until(LEFTOVER_GRACE, || running(&needle).is_empty()),
            "{how}: `{needle}` outlived pcl down: {:?}",
            running(&needle)
        );
    }
    assert_nothing_left(&env.session);
}

/// The guard beside an engine host: its child running `engine --guard`.
fn guard_of(engine_host: i32) -> i32 {
    let guards: Vec<i32> = children_of(engine_host)
        .into_iter()
        .filter(|&pid| {
            let argv = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            String::from_utf8_lossy(&argv).contains("--guard")
        })
        .collect();
    assert_eq!(
        guards.len(),
        1,
        "one guard beside engine host {engine_host}"
    );
    guards[0]
}

fn signal(pid: i32, sig: i32) {
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(pid, sig) };
}

/// A push into `workdir` stopped mid-file: the engine host is frozen
/// while its temporary file exists. Returns the engine host's pid and the
/// temporary file.
fn freeze_mid_push(env: &Env, session: &str, workdir: &Path, file: &Path) -> (i32, PathBuf) {
    let engine_host = engine_pids(session)[0];
    let file = file.to_str().unwrap();
    let mut push = env.spawn(&["--session", session, "push", "--file", file, "big.bin"]);
    let mut temp = None;
    let found = wait_until(Duration::from_secs(20), || {
        temp = pcl_temp_files(workdir).into_iter().next();
        temp.is_some()
    });
    signal(engine_host, libc::SIGSTOP);
    assert!(found, "no temporary file appeared in {}", workdir.display());
    let _ = push.kill();
    let _ = push.wait();
    (engine_host, workdir.join(temp.unwrap()))
}

#[test]
fn the_next_engine_host_removes_what_a_killed_one_and_its_guard_left() {
    let env = Env::new();
    let work = env.home().join("w");
    let other_work = env.home().join("other");
    let big = env.write("big.bin", vec![7u8; 300 << 20]);
    // Frozen engine hosts stay connected as long as the test needs.
    let cluster = |dir: &Path| {
        env.write_cluster(&[Host::local(1)
            .raw(&format!("workdir = \"{}\"", dir.display()))
            .raw("link_timeout = 300")])
    };

    // Another session of the same user, frozen mid-push: alive, so its
    // temporary file is live and must be left alone.
    let other = env.other_session("other");
    env.pcl(["--session", &other, "up"])
        .arg(cluster(&other_work))
        .run()
        .success();
    let (other_host, other_temp) = freeze_mid_push(&env, &other, &other_work, &big);

    env.up([cluster(&work)]);
    let (victim, temp) = freeze_mid_push(&env, &env.session, &work, &big);
    let guard = guard_of(victim);
    // The guard first, so that it cannot clean up either.
    signal(guard, libc::SIGKILL);
    signal(victim, libc::SIGKILL);
    assert!(
        wait_until(Duration::from_secs(10), || !engine_pids(&env.session)
            .contains(&victim)),
        "the engine host is gone"
    );
    assert!(
        temp.exists(),
        "the kill left its temporary file, as it should here"
    );
    // `restart` relaunches only what the daemon knows to be dead.
    assert!(
        wait_until(Duration::from_secs(10), || env.status_json()["engines"][0]
            ["state"]
            == "dead"),
        "the daemon never saw its engine host die: {}",
        env.status_json()
    );

    // A fresh engine host of this user on this machine cleans up.
    env.pcl(["restart"]).run().success();
    assert!(
        wait_until(Duration::from_secs(10), || !temp.exists()),
        "{} is still there after the next engine host started",
        temp.display()
    );
    assert!(
        other_temp.exists(),
        "a live engine host's temporary file was removed"
    );
    let journals = env.home().join(".cache/pcl/journal");
    let count = || fs::read_dir(&journals).map_or(0, |d| d.count());
    assert!(
        wait_until(Duration::from_secs(5), || count() == 2),
        "one journal per live engine host, found {}",
        count()
    );

    // The frozen one carries on and completes a push once thawed.
    signal(other_host, libc::SIGCONT);
    env.pcl(["--session", &other, "push", "--file"])
        .arg(&big)
        .arg("big.bin")
        .run()
        .success();
    assert_eq!(
        fs::metadata(other_work.join("big.bin")).unwrap().len(),
        300 << 20
    );
    // The push cut off while frozen ends with its stream's reset.
    assert!(
        wait_until(Duration::from_secs(10), || pcl_temp_files(&other_work)
            .is_empty()),
        "{:?}",
        pcl_temp_files(&other_work)
    );
    env.pcl(["--session", &other, "down"]).run().success();
    env.down();
    assert!(
        wait_until(Duration::from_secs(5), || count() == 0),
        "journals left after every session stopped"
    );
}

#[test]
fn a_command_that_redirects_its_shell_does_not_jam_the_engine() {
    let env = Env::new();
    env.up([env.cluster_local(2)]);
    for jam in [
        "exec >/dev/null",
        "exec 2>/dev/null",
        "exec >/dev/null 2>&1; echo hidden",
        "exec 1>&- 2>&-",
        "exec </dev/zero",
    ] {
        let out = env.pcl(["px", jam]).timeout_secs(20).run().success();
        assert_eq!(out.stdout_str(), "", "{jam}");
        // `cat` ends at once: stdin is /dev/null again, whatever the jam.
        let out = env
            .px(["cat; echo still here; echo and here >&2"])
            .success();
        assert_px_output(
            &out,
            "[stdout:0] still here\n[stderr:0] and here\n[stdout:1] still here\n[stderr:1] and here\n",
        );
    }
    // State is kept: these are the same shells.
    env.px(["kept=1"]).success();
    env.px(["exec >/dev/null"]).success();
    env.px(["echo $kept"])
        .success()
        .assert_stdout("[stdout:0] 1\n[stdout:1] 1\n");
    let v = status_json(&env);
    assert!(v.contains("\"idle\"") && !v.contains("\"busy\""), "{v}");
}

#[test]
fn a_command_cannot_replace_how_its_shell_ends_commands() {
    let env = Env::new();
    env.up([env.cluster_local(2)]);
    // The function that prints each command's end is read-only: defining
    // one of that name, or unsetting it, fails like any readonly change,
    // instead of leaving every later command without an end.
    for attempt in ["__pcl_e() { echo fake; }", "unset -f __pcl_e"] {
        env.pcl(["px", attempt])
            .timeout_secs(20)
            .run()
            .assert_exit(1)
            .assert_stderr_contains("readonly function");
    }
    env.px(["echo still here"])
        .success()
        .assert_stdout("[stdout:0] still here\n[stdout:1] still here\n");
}

fn status_json(env: &Env) -> String {
    env.pcl(["status", "--json"]).run().success().stdout_str()
}

#[test]
fn a_shell_that_does_not_answer_an_interrupt_is_replaced() {
    let env = Env::new();
    env.up([env.cluster_local(1)]);
    env.px(["kept=1"]).success();
    // A builtin loop is the shell itself: SIGINT to its jobs reaches nothing.
    let child = env.spawn(&["px", "while :; do :; done"]);
    std::thread::sleep(Duration::from_millis(500));
    env.pcl(["interrupt"]).run().success();
    let (code, stdout, stderr, _) = finish(child, Duration::from_secs(15));
    assert_eq!(code, 130, "{stderr}");
    assert!(stdout.is_empty());
    assert!(
        stderr.contains("did not stop on interrupt; the shell was replaced and its state was lost"),
        "{stderr}"
    );
    // A fresh shell, said so: its state is gone, and it answers.
    env.px(["echo ${kept-gone}"])
        .success()
        .assert_stdout("[stdout:0] gone\n");
    // A command that does stop on interrupt keeps its shell.
    env.px(["kept=2"]).success();
    let child = env.spawn(&["px", "sleep 30"]);
    std::thread::sleep(Duration::from_millis(500));
    env.pcl(["interrupt"]).run().success();
    let (code, _, stderr, _) = finish(child, Duration::from_secs(15));
    assert_eq!(code, 130, "{stderr}");
    env.px(["echo $kept"])
        .success()
        .assert_stdout("[stdout:0] 2\n");
}

#[test]
fn a_shell_that_exits_is_replaced_without_waiting_for_its_background_jobs() {
    let env = Env::new();
    env.up([env.cluster_local(2)]);
    // The job holds the shell's stdout and stderr open: the engine must
    // see the shell's own exit, not wait for the pipes to close, and the
    // job goes with the shell it belonged to.
    let out = env
        .pcl(["px", "sleep 120 & echo bye; exit 3"])
        .timeout_secs(30)
        .run()
        .assert_exit(3)
        .assert_stderr_contains("the shell exited with status 3");
    assert_px_output(&out, "[stdout:0] bye\n[stdout:1] bye\n");
    // The jobs are SIGKILLed before the px returns, but a killed process
    // ends only when it next runs: on a loaded machine, after the next
    // command has looked.
    let mut seen = String::new();
    let gone = wait_until(Duration::from_secs(10), || {
        seen = env
            .px(["pgrep -f 'sleep 12[0]' || echo no job left"])
            .success()
            .stdout_str();
        seen == "[stdout:0] no job left\n[stdout:1] no job left\n"
    });
    assert!(gone, "the shells' jobs outlived them: {seen}");
}

#[test]
fn everything_a_command_wrote_before_its_shell_exited_arrives() {
    let env = Env::new();
    env.up([env.cluster_local(4)]);
    for run in 0..20 {
        let out = env.px(["echo out; echo err >&2; exit 3"]).assert_exit(3);
        let outs = out
            .stdout_lines()
            .iter()
            .filter(|l| l.ends_with("] out"))
            .count();
        let errs = out
            .stderr_lines()
            .iter()
            .filter(|l| l.ends_with("] err"))
            .count();
        assert_eq!((outs, errs), (4, 4), "run {run}: {}", out.describe());
    }
}
