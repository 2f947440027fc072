//! End-to-end tests of the local launcher: `pcl up` with local engines, then
//! the foundation verbs (`ids`, `status`, `px`) and `down`.

mod common;

use common::*;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

/// `pcl up` with a cluster file of `n` local engines; checks the id table.
fn up_local(env: &Env, n: usize) {
    let cluster = env.cluster_local(n);
    let table = env.up([&cluster]);
    let expected: Vec<(u32, String)> = (0..n as u32).map(|i| (i, "localhost".into())).collect();
    assert_eq!(table, expected, "engine table printed by `pcl up`");
}

fn status_json(env: &Env) -> serde_json::Value {
    let out = env.pcl(["status", "--json"]).run().success();
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| out.fail(&format!("status --json is not JSON: {e}")))
}

#[test]
fn up_prints_engine_table_and_ids_lists_them() {
    let env = Env::new();
    up_local(&env, 2);
    env.pcl(["ids"]).run().success().assert_stdout("0\n1\n");
    env.down();
    assert_nothing_left(&env.session);
}

#[test]
fn up_shows_progress_on_a_terminal_and_keeps_the_table_exact() {
    let env = Env::new();
    let out = env
        .pcl(["up", "-n", "2"])
        .stderr_on_a_terminal()
        .run()
        .success();
    assert_eq!(
        out.stdout_str(),
        "0 localhost\n1 localhost\n",
        "{}",
        out.describe()
    );
    assert!(
        out.stderr.contains("starting hosts"),
        "no progress on the terminal\n{}",
        out.describe()
    );
    env.down();
    let out = env.pcl(["up", "-n", "2"]).run().success();
    assert_eq!(out.stderr, "", "stderr is not a terminal: nothing extra");
}

#[test]
fn up_without_file_starts_one_local_engine_per_core() {
    let cores = thread::available_parallelism().map_or(1, |n| n.get());
    let env = Env::new();
    let table = env.up([] as [&str; 0]);
    assert_eq!(table.len(), cores, "one engine per core: {table:?}");
    assert!(table.iter().enumerate().all(|(i, (id, _))| *id == i as u32));
    let ids: String = (0..cores).map(|i| format!("{i}\n")).collect();
    env.pcl(["ids"]).run().success().assert_stdout(&ids);

    let env3 = Env::named("up-n");
    let table = env3.up(["-n", "3"]);
    assert_eq!(
        table.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
}

#[test]
fn session_can_be_named_with_the_flag() {
    let env = Env::new();
    let other = env.other_session("flag");
    let cluster = env.cluster_local(1);
    env.pcl(["up", &cluster.to_string_lossy(), "--session", &other])
        .run()
        .success();
    // The env's own session (PCL_SESSION) is not the one that came up.
    env.pcl(["ids"]).run().failure();
    env.pcl(["ids", "--session", &other])
        .run()
        .success()
        .assert_stdout("0\n");
    env.pcl(["down", "--session", &other]).run().success();
    assert_nothing_left(&other);
}

#[test]
fn status_json_describes_engines() {
    let env = Env::new();
    up_local(&env, 2);
    let v = status_json(&env);
    assert_eq!(v["session"], env.session.as_str(), "{v}");
    let engines = v["engines"].as_array().expect("engines array");
    assert_eq!(engines.len(), 2, "{v}");
    for (i, e) in engines.iter().enumerate() {
        assert_eq!(e["id"], i as u64, "{v}");
        assert_eq!(e["host"], "localhost", "{v}");
        assert_eq!(e["state"], "idle", "{v}");
        assert!(e["job"].is_null(), "{v}");
    }
}

#[test]
fn status_shows_busy_engine_while_a_command_runs() {
    let env = Env::new();
    up_local(&env, 2);
    thread::scope(|s| {
        let px = s.spawn(|| env.px(["-t", "1", "sleep 4"]));
        let busy = wait_until(Duration::from_secs(10), || {
            let v = status_json(&env);
            v["engines"][1]["state"] == "busy" && !v["engines"][1]["job"].is_null()
        });
        let v = status_json(&env);
        assert!(busy, "engine 1 never showed busy with a job: {v}");
        assert_eq!(v["engines"][0]["state"], "idle", "{v}");
        px.join().unwrap().success();
    });
    let v = status_json(&env);
    assert_eq!(v["engines"][1]["state"], "idle", "{v}");
}

#[test]
fn px_prefixes_lines_in_engine_order() {
    let env = Env::new();
    up_local(&env, 2);
    let out = env
        .px(["echo out$PCL_ENGINE_ID; echo err$PCL_ENGINE_ID >&2; echo 'two words'; echo e2 >&2"])
        .success();
    assert_px_output(
        &out,
        "[stdout:0] out0\n\
         [stdout:0] two words\n\
         [stderr:0] err0\n\
         [stderr:0] e2\n\
         [stdout:1] out1\n\
         [stdout:1] two words\n\
         [stderr:1] err1\n\
         [stderr:1] e2\n",
    );
}

#[test]
fn px_order_is_by_engine_id_not_by_finish_time() {
    let env = Env::new();
    up_local(&env, 2);
    // Engine 0 finishes last.
    let out = env
        .px(["[ $PCL_ENGINE_ID = 0 ] && sleep 1; echo $PCL_ENGINE_ID"])
        .success();
    assert_px_output(&out, "[stdout:0] 0\n[stdout:1] 1\n");
}

#[test]
fn px_prints_final_chunk_without_newline() {
    let env = Env::new();
    up_local(&env, 2);
    let out = env.px(["printf abc; printf def >&2"]).success();
    assert_px_output(
        &out,
        "[stdout:0] abc\n[stderr:0] def\n[stdout:1] abc\n[stderr:1] def\n",
    );
}

#[test]
fn px_shell_state_persists_between_calls() {
    let env = Env::new();
    up_local(&env, 2);
    env.px(["cd /tmp; export X=1; y=2; f(){ echo hi; }"])
        .success();
    let out = env
        .px(["pwd; echo \"X=$X y=$y\"; f; bash -c 'echo child sees X=$X y=${y:-unset}'"])
        .success();
    let mut expected = String::new();
    for id in 0..2 {
        for line in ["/tmp", "X=1 y=2", "hi", "child sees X=1 y=unset"] {
            expected.push_str(&format!("[stdout:{id}] {line}\n"));
        }
    }
    assert_px_output(&out, &expected);
}

#[test]
fn px_engines_know_their_id_count_host_and_session() {
    let env = Env::new();
    up_local(&env, 2);
    let out = env
        .px(["echo $PCL_ENGINE_ID $PCL_ENGINE_COUNT $PCL_HOST $PCL_SESSION"])
        .success();
    let s = &env.session;
    assert_px_output(
        &out,
        &format!("[stdout:0] 0 2 localhost {s}\n[stdout:1] 1 2 localhost {s}\n"),
    );
}

#[test]
fn px_stdin_is_dev_null() {
    let env = Env::new();
    up_local(&env, 2);
    let start = Instant::now();
    let out = env
        .px([
            "--timeout",
            "20",
            "cat; echo \"rc=$?\"; readlink /proc/self/fd/0",
        ])
        .success();
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "`cat` must see EOF at once: {:?}",
        start.elapsed()
    );
    assert_px_output(
        &out,
        "[stdout:0] rc=0\n[stdout:0] /dev/null\n[stdout:1] rc=0\n[stdout:1] /dev/null\n",
    );
}

#[test]
fn px_shells_start_in_home_by_default() {
    let env = Env::new();
    up_local(&env, 2);
    let out = env.px(["pwd"]).success();
    let home = env.home();
    let h = home.display();
    assert_px_output(&out, &format!("[stdout:0] {h}\n[stdout:1] {h}\n"));
}

#[test]
fn px_shells_start_in_workdir_from_cluster_file() {
    let env = Env::new();
    let workdir = env.path().join("work/dir");
    let cluster = env.write_cluster(&[Host::local(2).workdir(&workdir.to_string_lossy())]);
    env.up([&cluster]);
    assert!(workdir.is_dir(), "workdir is created when missing");
    let out = env.px(["pwd"]).success();
    let w = workdir.display();
    assert_px_output(&out, &format!("[stdout:0] {w}\n[stdout:1] {w}\n"));
}

#[test]
fn px_raw_keeps_binary_output_exact() {
    let env = Env::new();
    up_local(&env, 2);
    const MIB: usize = 1 << 20;
    let out = env
        .px([
            "--raw",
            "head -c 1048576 /dev/urandom | tee rand$PCL_ENGINE_ID | cat",
        ])
        .success();
    assert_eq!(out.stdout.len(), 2 * MIB, "two engines x 1 MiB");
    let sums = env
        .px(["sha256sum rand$PCL_ENGINE_ID | cut -d' ' -f1"])
        .success();
    let sums = px_stdout_lines(&sums);
    assert_eq!(
        sums,
        vec![
            (0, sha256_hex(&out.stdout[..MIB])),
            (1, sha256_hex(&out.stdout[MIB..])),
        ],
        "--raw bytes equal the files written on the engines, in engine order"
    );
}

#[test]
fn px_raw_keeps_a_10mb_line_without_adding_a_newline() {
    let env = Env::new();
    up_local(&env, 2);
    let out = env
        .pcl(["px", "--raw", "head -c 10000000 /dev/zero | tr '\\0' a"])
        .timeout_secs(120)
        .run()
        .success();
    assert_eq!(out.stdout.len(), 20_000_000, "2 x 10 MB, nothing added");
    if let Some(pos) = out.stdout.iter().position(|&b| b != b'a') {
        out.fail(&format!("byte {pos} is {:#x}, not 'a'", out.stdout[pos]));
    }
}

#[test]
fn px_output_larger_than_the_daemon_holds_arrives_whole_and_in_order() {
    let env = Env::new();
    up_local(&env, 3);
    // 3 x 40 MB wait their turn: more than the daemon keeps in memory.
    let out = env
        .pcl([
            "px",
            "--raw",
            "head -c 40000000 /dev/zero | tr '\\0' $PCL_ENGINE_ID",
        ])
        .timeout_secs(180)
        .run()
        .success();
    assert_eq!(out.stdout.len(), 120_000_000);
    for (id, part) in out.stdout.chunks(40_000_000).enumerate() {
        let want = b'0' + id as u8;
        if let Some(pos) = part.iter().position(|&b| b != want) {
            out.fail(&format!("engine {id}'s byte {pos} is {:#x}", part[pos]));
        }
    }
    let peak = status_kib(daemon_pids(&env.session)[0], "VmHWM");
    assert!(
        peak < 96 << 10,
        "the daemon's resident peak is {peak} KiB for 120 MB of output"
    );
}

#[test]
fn px_output_the_daemon_cannot_hold_fails_that_engine_only() {
    let env = Env::new();
    // The session's directory, where held output waits, on a full disk.
    let Some(tmpfs) = Tmpfs::mount(env.runtime_dir(), "16m") else {
        return;
    };
    up_local(&env, 3);
    let out = env
        .pcl([
            "px",
            "--raw",
            // Engine 1's output waits for engine 0's turn to end, which
            // waits for engine 1 to have written it all (10 s at most).
            "if [ $PCL_ENGINE_ID = 1 ]; then head -c 40000000 /dev/zero; touch written; \
             else for i in $(seq 200); do [ -e written ] && break; sleep 0.05; done; echo small; fi",
        ])
        .timeout_secs(180)
        .run()
        .assert_exit(1)
        .assert_stderr_contains(
            "engine 1 (localhost): part of its output was lost: \
             cannot hold it on disk: No space left on device",
        );
    assert!(out.stdout.starts_with(b"small\n") && out.stdout.ends_with(b"small\n"));
    // Down while the directory is mounted: `down` finds the session there.
    env.down();
    drop(tmpfs);
}

#[test]
fn px_exit_status_is_the_largest() {
    let env = Env::new();
    up_local(&env, 2);
    env.px(["keep=yes"]).success();
    let out = env
        .px(["echo out$PCL_ENGINE_ID; (exit $((PCL_ENGINE_ID+3)))"])
        .assert_exit(4);
    // Failing engines' output is still printed.
    assert_px_output(&out, "[stdout:0] out0\n[stdout:1] out1\n");
    env.px(["(exit $((PCL_ENGINE_ID*5)))"]).assert_exit(5);
    env.px(["true"]).assert_exit(0);
    // The shells survived: state is intact.
    let out = env.px(["echo $keep"]).success();
    assert_px_output(&out, "[stdout:0] yes\n[stdout:1] yes\n");
}

#[test]
fn px_timeout_kills_the_command_but_keeps_the_shell() {
    let env = Env::new();
    up_local(&env, 2);
    env.px(["z=5; cd /tmp"]).success();
    let start = Instant::now();
    let out = env
        .px(["--timeout", "1", "echo before; sleep 300"])
        .assert_exit(124);
    // What the command printed before it was killed is kept.
    let got = px_stdout_lines(&out);
    assert_eq!(
        got,
        vec![(0, "before".to_string()), (1, "before".to_string())],
        "{}",
        out.describe()
    );
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "px --timeout 1 took {:?}",
        start.elapsed()
    );
    // The command's processes are gone, the shells are not.
    let sleeping = || {
        session_processes(&env.session)
            .into_iter()
            .filter(|p| p.argv.first().is_some_and(|a| a.ends_with("sleep")))
            .collect::<Vec<_>>()
    };
    assert!(
        wait_until(LEFTOVER_GRACE, || sleeping().is_empty()),
        "`sleep 300` still running after the timeout:\n{}",
        format_procs(&sleeping())
    );
    let out = env.px(["echo $z; pwd"]).success();
    assert_px_output(
        &out,
        "[stdout:0] 5\n[stdout:0] /tmp\n[stdout:1] 5\n[stdout:1] /tmp\n",
    );
}

/// A timeout finds the command's process group; a user who turned job
/// control off (`set +m`) would leave it in the shell's own, where only
/// replacing the shell (and losing its state) could stop it.
#[test]
fn px_timeout_after_set_plus_m_still_keeps_the_shell() {
    let env = Env::new();
    up_local(&env, 1);
    env.px(["kept=1; set +m"]).success();
    let out = env.px(["--timeout", "1", "sleep 300"]).assert_exit(124);
    assert!(
        !out.stderr.contains("replaced"),
        "the shell was replaced\n{}",
        out.describe()
    );
    env.px(["echo $kept; [[ $- == *m* ]] && echo job control"])
        .success()
        .assert_stdout("[stdout:0] 1\n[stdout:0] job control\n");
}

#[test]
fn px_shell_exit_is_reported_and_a_fresh_shell_follows() {
    let env = Env::new();
    up_local(&env, 2);
    env.px(["w=1"]).success();
    let out = env.px(["exit 7"]).assert_exit(7);
    assert!(
        !out.stderr.trim().is_empty(),
        "the shell's exit must be reported on stderr\n{}",
        out.describe()
    );
    let out = env
        .px(["echo ${w:-unset} $PCL_ENGINE_ID $PCL_ENGINE_COUNT"])
        .success();
    assert_px_output(&out, "[stdout:0] unset 0 2\n[stdout:1] unset 1 2\n");
    // The fresh shell is as usable as the first one.
    env.px(["v=2"]).success();
    let out = env.px(["echo $v"]).success();
    assert_px_output(&out, "[stdout:0] 2\n[stdout:1] 2\n");
}

#[test]
fn px_b_groups_identical_outputs() {
    let env = Env::new();
    up_local(&env, 3);
    let out = env
        .px(["-b", "echo same; echo group$(( PCL_ENGINE_ID == 2 ))"])
        .success();
    let lines = out.stdout_lines();
    let count = |l: &str| lines.iter().filter(|x| x.as_str() == l).count();
    // Content lines are printed once per group, without prefixes.
    assert_eq!(count("same"), 2, "one `same` per group\n{}", out.describe());
    assert_eq!(count("group0"), 1, "{}", out.describe());
    assert_eq!(count("group1"), 1, "{}", out.describe());
    assert!(!out.stdout_str().contains("[stdout:"), "{}", out.describe());
    // Group headers name the engines: 0 and 1 together, before 2.
    let pos = |l: &str| lines.iter().position(|x| x == l).unwrap();
    let header_01 = lines[..pos("group0")]
        .iter()
        .rev()
        .find(|l| l.contains('0') && l.contains('1'));
    assert!(
        header_01.is_some_and(|h| !h.contains('2')),
        "header naming engines 0 and 1 before their output\n{}",
        out.describe()
    );
    assert!(pos("group0") < pos("group1"));
    assert!(
        lines[pos("group0")..pos("group1")]
            .iter()
            .any(|l| l.contains('2') && !l.contains("group")),
        "header naming engine 2 before its output\n{}",
        out.describe()
    );

    // All engines identical: a single group.
    let out = env.px(["-b", "echo all"]).success();
    assert_eq!(
        out.stdout_lines().iter().filter(|l| *l == "all").count(),
        1,
        "{}",
        out.describe()
    );
}

#[test]
fn px_targets_select_engines() {
    let env = Env::new();
    up_local(&env, 3);
    let cmd = "echo $PCL_ENGINE_ID";
    let out = env.px(["-t", "1", cmd]).success();
    assert_px_output(&out, "[stdout:1] 1\n");
    let out = env.px(["-t", "0,2", cmd]).success();
    assert_px_output(&out, "[stdout:0] 0\n[stdout:2] 2\n");
    let out = env.px(["-t", "1-2", cmd]).success();
    assert_px_output(&out, "[stdout:1] 1\n[stdout:2] 2\n");
    let out = env.px(["-t", "all", cmd]).success();
    assert_px_output(&out, "[stdout:0] 0\n[stdout:1] 1\n[stdout:2] 2\n");
    let out = env.px(["-t", "localhost", cmd]).success();
    assert_px_output(&out, "[stdout:0] 0\n[stdout:1] 1\n[stdout:2] 2\n");
    // The long option too.
    let out = env.px(["--targets", "2", cmd]).success();
    assert_px_output(&out, "[stdout:2] 2\n");
    // No such engine: an error, not silence.
    let out = env.px(["-t", "7", cmd]).failure();
    assert!(!out.stderr.trim().is_empty(), "{}", out.describe());
}

#[test]
fn px_json_reports_each_engine() {
    let env = Env::new();
    up_local(&env, 2);
    let out = env
        .px([
            "--json",
            "echo o$PCL_ENGINE_ID; echo e$PCL_ENGINE_ID >&2; (exit $PCL_ENGINE_ID)",
        ])
        .assert_exit(1);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| out.fail(&format!("not one JSON document: {e}")));
    let results = v["results"].as_array().expect("results array");
    assert_eq!(results.len(), 2, "{v}");
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r["id"], i as u64, "{v}");
        assert_eq!(r["host"], "localhost", "{v}");
        assert_eq!(r["status"], i as u64, "{v}");
        assert_eq!(r["stdout"], format!("o{i}\n"), "{v}");
        assert_eq!(r["stderr"], format!("e{i}\n"), "{v}");
    }
}

#[test]
fn px_engines_of_one_host_each_end_their_own_way() {
    // One host's engines share one request: a shell that exits, a command
    // that times out and one that fails each get their own answer.
    let env = Env::new();
    up_local(&env, 4);
    env.px(["kept=$PCL_ENGINE_ID"]).success();
    let out = env
        .px([
            "--json",
            "--timeout",
            "3",
            "case $PCL_ENGINE_ID in 0) echo bye; exit 7;; 1) echo slow; sleep 300;; \
             2) echo fast >&2; (exit 2);; 3) echo $kept;; esac",
        ])
        .assert_exit(124);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| out.fail(&format!("not one JSON document: {e}")));
    let results = v["results"].as_array().expect("results array");
    let fields = |i: usize| {
        let r = &results[i];
        (
            r["id"].as_u64().unwrap(),
            r["status"].as_i64().unwrap(),
            r["stdout"].as_str().unwrap().to_string(),
            r["stderr"].as_str().unwrap().to_string(),
        )
    };
    assert_eq!(results.len(), 4, "{v}");
    assert_eq!(fields(0), (0, 7, "bye\n".into(), String::new()), "{v}");
    assert!(
        results[0]["note"]
            .as_str()
            .is_some_and(|n| n.contains("exited with status 7")),
        "{v}"
    );
    // (bash says on stderr that the killed job was `Terminated`.)
    let (id, status, stdout, _) = fields(1);
    assert_eq!((id, status, stdout.as_str()), (1, 124, "slow\n"), "{v}");
    assert!(
        results[1]["note"]
            .as_str()
            .is_some_and(|n| n.contains("timed out after 3 s")),
        "{v}"
    );
    assert_eq!(fields(2), (2, 2, String::new(), "fast\n".into()), "{v}");
    assert_eq!(fields(3), (3, 0, "3\n".into(), String::new()), "{v}");
    assert!(
        results[2]["note"].is_null() && results[3]["note"].is_null(),
        "{v}"
    );
    // Each engine is idle again, the timed-out one with its state.
    let out = env.px(["echo ${kept-gone}"]).success();
    assert_px_output(
        &out,
        "[stdout:0] gone\n[stdout:1] 1\n[stdout:2] 2\n[stdout:3] 3\n",
    );
}

/// Position of `<path>:<line>:<col>:` in `stderr`, checking the column is
/// a number.
fn find_location(stderr: &str, path: &Path, line: u32) -> Option<u32> {
    let prefix = format!("{}:{line}:", path.display());
    let start = stderr.find(&prefix)? + prefix.len();
    let rest = &stderr[start..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    if digits.is_empty() || !rest[digits.len()..].starts_with(':') {
        return None;
    }
    digits.parse().ok()
}

#[test]
fn cluster_file_unknown_key_is_reported_with_line_and_column() {
    let env = Env::new();
    let cluster = env.write(
        "cluster.toml",
        "[[hosts]]\nhost = \"localhost\"\nlauncher = \"local\"\nenignes = 2\n",
    );
    let out = env.pcl(["up", &cluster.to_string_lossy()]).run().failure();
    assert_eq!(
        find_location(&out.stderr, &cluster, 4),
        Some(1),
        "expected `{}:4:1:` on stderr\n{}",
        cluster.display(),
        out.describe()
    );
    assert!(out.stderr.contains("enignes"), "{}", out.describe());
    assert_nothing_left(&env.session);
}

#[test]
fn cluster_file_syntax_error_is_reported_with_line_and_column() {
    let env = Env::new();
    let cluster = env.write(
        "cluster.toml",
        "[[hosts]]\nhost = \"localhost\"\nengines = = 2\n",
    );
    let out = env.pcl(["up", &cluster.to_string_lossy()]).run().failure();
    assert!(
        find_location(&out.stderr, &cluster, 3).is_some(),
        "expected `{}:3:<col>:` on stderr\n{}",
        cluster.display(),
        out.describe()
    );
    assert_nothing_left(&env.session);
}

#[test]
fn down_leaves_nothing_running() {
    let env = Env::new();
    up_local(&env, 2);
    env.px(["echo warm"]).success();
    // The harness sees the session's processes (so the check below means
    // something).
    assert!(
        !daemon_pids(&env.session).is_empty(),
        "daemon not found in /proc"
    );
    assert!(
        !engine_pids(&env.session).is_empty(),
        "engines not found in /proc"
    );
    assert!(session_processes(&env.session).len() >= 4);
    env.down();
    assert_nothing_left(&env.session);
    // The session is gone: a clear error naming it.
    let out = env.pcl(["ids"]).run().failure();
    assert!(out.stderr.contains(&env.session), "{}", out.describe());
}

#[test]
fn down_also_stops_background_jobs_of_the_shells() {
    let env = Env::new();
    up_local(&env, 2);
    env.px(["sleep 1000 >/dev/null 2>&1 &"]).success();
    assert!(
        session_processes(&env.session)
            .iter()
            .any(|p| p.argv.first().is_some_and(|a| a.ends_with("sleep"))),
        "background sleep not found"
    );
    env.down();
    assert_nothing_left(&env.session);
}
