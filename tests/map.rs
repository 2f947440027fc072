//! `map`, async jobs (`--async`, `jobs`, `wait`, `result`, `abort`),
//! `interrupt` and Ctrl-C, end to end with real local engines.

mod common;

use common::*;
use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

fn up(env: &Env, engines: usize) {
    let cluster = env.cluster_local(engines);
    env.up([&cluster]);
}

/// Processes running exactly `argv` under one of this session's engines.
fn engine_children(env: &Env, argv: &[&str]) -> Vec<i32> {
    let engines = engine_pids(&env.session);
    session_like(argv)
        .into_iter()
        .filter(|&pid| ancestors(pid).iter().any(|a| engines.contains(a)))
        .collect()
}

fn session_like(argv: &[&str]) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|b| {
                let words: Vec<&[u8]> = b.split(|&c| c == 0).filter(|w| !w.is_empty()).collect();
                words.len() == argv.len() && words.iter().zip(argv).all(|(w, a)| *w == a.as_bytes())
            })
        })
        .collect()
}

#[test]
fn ordered_results_equal_the_serial_loop() {
    let env = Env::new();
    up(&env, 4);
    let items: Vec<String> = (1..=1000).map(|i| i.to_string()).collect();
    let mut args = vec![
        "map".to_string(),
        "echo $(( {} * 3 )); printf 'second %s\\n' {}".to_string(),
    ];
    args.extend(items.iter().cloned());
    let out = env.pcl(&args).run().success();
    let serial: String = (1..=1000)
        .map(|i| format!("{}\nsecond {i}\n", i * 3))
        .collect();
    assert_eq!(out.stdout_str(), serial);

    // --unordered: the same lines, in any order.
    args.insert(1, "--unordered".into());
    let out = env.pcl(&args).run().success();
    let mut got = out.stdout_lines();
    let mut want: Vec<String> = serial.lines().map(String::from).collect();
    got.sort();
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn items_from_stdin_and_from_a_file() {
    let env = Env::new();
    up(&env, 2);
    let input: String = (0..3000).map(|i| format!("item {i}\n")).collect();
    let want: String = (0..3000).map(|i| format!("<item {i}>\n")).collect();
    // Without {}, the item is appended.
    let out = env
        .pcl(["map", "echo", "-"])
        .stdin(input.clone())
        .run()
        .success();
    assert_eq!(out.stdout_str(), input);
    let out = env
        .pcl(["map", "echo \"<\"{}\">\"", "-"])
        .stdin(input.clone())
        .run()
        .success();
    assert_eq!(out.stdout_str(), want);
    let file = env.write("items.txt", &input);
    let out = env
        .pcl([
            "map",
            "--from",
            &file.to_string_lossy(),
            "echo \"<\"{}\">\"",
        ])
        .run()
        .success();
    assert_eq!(out.stdout_str(), want);
}

#[test]
fn ten_million_items_stream_in_bounded_memory() {
    const ITEMS: u64 = 10_000_000;
    let env = Env::new();
    up(&env, 2);
    let mut map = env.spawn_with_stdin(&["map", "echo {}", "--from", "-"], Stdio::piped());
    // The writer stops when the map is gone (a broken pipe).
    let mut stdin = map.stdin.take().unwrap();
    let written = Arc::new(AtomicU64::new(0));
    let count = written.clone();
    std::thread::spawn(move || {
        let mut line = Vec::new();
        for i in 1..=ITEMS {
            line.clear();
            writeln!(line, "{i}").unwrap();
            if stdin.write_all(&line).is_err() {
                return;
            }
            count.fetch_add(1, Ordering::SeqCst);
        }
    });
    // Results come in input order while the input is still being written.
    let mut results = BufReader::new(map.stdout.take().unwrap()).lines();
    let mut next = 1u64;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(3) {
        let line = results.next().expect("a result").unwrap();
        assert_eq!(line, next.to_string());
        next += 1;
    }
    let consumed = written.load(Ordering::SeqCst);
    assert!(next > 100, "only {next} results in 3 s");
    assert!(
        consumed < ITEMS / 10,
        "the map took {consumed} items in 3 s: it reads ahead of the engines"
    );
    let cli = i32::try_from(map.id()).unwrap();
    for (who, pid) in [("daemon", daemon_pids(&env.session)[0]), ("CLI", cli)] {
        let peak = status_kib(pid, "VmHWM");
        assert!(peak < 64 << 10, "the {who}'s resident peak is {peak} KiB");
    }
    // SAFETY: signalling the child this test started.
    unsafe { libc::kill(cli, libc::SIGINT) };
    let drain = std::thread::spawn(move || results.count());
    let (code, _, stderr, _) = finish(map, Duration::from_secs(10));
    assert_eq!(code, 130, "{stderr}");
    drain.join().unwrap();
}

#[test]
fn hostile_items_are_quoted() {
    let env = Env::new();
    up(&env, 2);
    let items = [
        "$(touch pwned)",
        "`touch pwned2`",
        "a b  c",
        "it's",
        "\"dq\"",
        "*",
        "-n",
        "",
        "semi;colon",
        "back\\slash",
    ];
    let mut args = vec!["map", "printf '[%s]\\n' {}"];
    args.extend(items);
    let out = env.pcl(&args).run().success();
    let want: String = items.iter().map(|i| format!("[{i}]\n")).collect();
    assert_eq!(out.stdout_str(), want);
    for dir in [env.path().to_path_buf(), env.home()] {
        assert!(!dir.join("pwned").exists() && !dir.join("pwned2").exists());
    }
}

#[test]
fn tasks_see_engine_state_but_cannot_change_it() {
    let env = Env::new();
    up(&env, 2);
    env.px(["x=5; cd /tmp"]).success();
    let out = env
        .pcl(["map", "echo $x $PWD; y={}; cd /", "1", "2"])
        .run()
        .success();
    assert_eq!(out.stdout_str(), "5 /tmp\n5 /tmp\n");
    let out = env.px(["-t", "0", "echo ${y:-unset} $PWD"]).success();
    assert_eq!(out.stdout_str(), "[stdout:0] unset /tmp\n");
}

#[test]
fn exit_status_counts_failures_up_to_101() {
    let env = Env::new();
    up(&env, 2);
    let items: Vec<String> = (1..=10).map(|i| i.to_string()).collect();
    let mut args = vec![
        "map".to_string(),
        "echo {}; echo oops{} >&2; exit $(( {} % 2 ))".into(),
    ];
    args.extend(items);
    let out = env.pcl(&args).run().assert_exit(5);
    assert_eq!(out.stdout_lines().len(), 10);
    assert!(
        out.stderr.contains("item \"3\" on engine"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("oops3"), "{}", out.stderr);

    let mut args = vec!["map".to_string(), "false".into()];
    args.extend((0..150).map(|i| i.to_string()));
    env.pcl(&args).run().assert_exit(101);
}

#[test]
fn retries_and_per_task_timeout() {
    let env = Env::new();
    up(&env, 2);
    // Fails on the first run of each item only (a marker file per item).
    let out = env
        .pcl([
            "map",
            "--retries",
            "2",
            "if [ -e ran.{} ]; then echo ok {}; else touch ran.{}; exit 1; fi",
            "a",
            "b",
        ])
        .run()
        .success();
    assert_eq!(out.stdout_str(), "ok a\nok b\n");

    let out = env
        .pcl([
            "map",
            "--timeout",
            "0.5",
            "sleep {}; echo {}",
            "0",
            "30",
            "0",
        ])
        .run()
        .assert_exit(1);
    assert_eq!(out.stdout_str(), "0\n0\n");
    assert!(out.stderr.contains("timed out"), "{}", out.stderr);
    assert!(out.elapsed < Duration::from_secs(10), "{:?}", out.elapsed);
}

/// `pcl map --joblog LOG COMMAND 1 .. items`: its output, and the log.
fn map_with_joblog(env: &Env, command: &str, items: u32) -> (Output, String) {
    let log = env.path().join("joblog.tsv");
    let mut args = vec![
        "map".to_string(),
        "--joblog".into(),
        log.to_string_lossy().into_owned(),
        command.into(),
    ];
    args.extend((1..=items).map(|i| i.to_string()));
    let out = env.pcl(&args).run();
    let text = std::fs::read_to_string(&log).unwrap();
    (out, text)
}

/// Two batches are in flight per engine; one engine still runs its items
/// in input order, as `parallel -j1` would.
#[test]
fn one_engine_runs_the_items_in_order() {
    let env = Env::new();
    up(&env, 1);
    let trail = env.path().join("trail");
    let command = format!("echo {{}} >> {}", trail.display());
    let items: Vec<String> = (1..=12).map(|i| i.to_string()).collect();
    let want: String = items.iter().map(|i| format!("{i}\n")).collect();
    for round in 0..5 {
        let _ = std::fs::remove_file(&trail);
        let mut args = vec!["map".to_string(), command.clone()];
        args.extend(items.iter().cloned());
        env.pcl(&args).run().success();
        assert_eq!(
            std::fs::read_to_string(&trail).unwrap(),
            want,
            "round {round}: the items ran out of order"
        );
    }
}

#[test]
fn a_short_batch_after_long_ones_runs_only_its_own_items() {
    // One engine: each batch rewrites the same script, the last ones
    // over longer ones before them.
    let env = Env::new();
    up(&env, 1);
    let long: Vec<String> = (1..=300).map(|i| format!("{i:0>60}")).collect();
    let mut args = vec!["map".to_string(), "echo {}".to_string()];
    args.extend(long.iter().cloned());
    let out = env.pcl(&args).run().success();
    assert_eq!(out.stdout_lines(), long);
    let out = env.pcl(["map", "echo {}", "a"]).run().success();
    assert_eq!(out.stderr, "", "{}", out.describe());
    out.assert_stdout("a\n");
}

#[test]
fn joblog_rows_match_the_items() {
    let env = Env::new();
    up(&env, 3);
    let (out, text) = map_with_joblog(&env, "echo {}; exit $(( {} % 7 == 0 ))", 50);
    out.assert_exit(7);
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand")
    );
    let mut seqs = Vec::new();
    for line in lines {
        let f: Vec<&str> = line.split('\t').collect();
        assert_eq!(f.len(), 9, "{line}");
        let seq: u64 = f[0].parse().unwrap();
        assert_eq!(f[1], ":", "local jobs, as GNU parallel writes them");
        assert!(f[2].parse::<f64>().unwrap() > 1.0e9, "{line}");
        assert_eq!(f[3].len(), 10, "JobRuntime is %10.3f: {line}");
        assert_eq!(f[5], (seq.to_string().len() + 1).to_string(), "{line}");
        assert_eq!(f[6], if seq % 7 == 0 { "1" } else { "0" }, "{line}");
        assert_eq!(f[8], format!("echo {seq}; exit $(( {seq} % 7 == 0 ))"));
        seqs.push(seq);
    }
    seqs.sort();
    assert_eq!(seqs, (1..=50).collect::<Vec<_>>());
}

/// An engine host reads a batch's output in rounds, several tasks at a
/// time: each task's Starttime and JobRuntime are still its own.
#[test]
fn joblog_times_are_each_task_s_own() {
    let env = Env::new();
    up(&env, 1);
    let (out, text) = map_with_joblog(&env, "sleep 0.01; echo {}", 30);
    out.success();
    let mut rows: Vec<(u64, f64, f64)> = text
        .lines()
        .skip(1)
        .map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            (
                f[0].parse().unwrap(),
                f[2].parse().unwrap(),
                f[3].trim().parse().unwrap(),
            )
        })
        .collect();
    assert_eq!(rows.len(), 30, "{text}");
    for (seq, _, runtime) in &rows {
        assert!(
            *runtime >= 0.010,
            "item {seq} ran {runtime} s, less than its sleep\n{text}"
        );
    }
    // One engine runs them one after the other.
    rows.sort_by(|a, b| a.1.total_cmp(&b.1));
    for pair in rows.windows(2) {
        let ((_, start, runtime), (seq, next, _)) = (pair[0], pair[1]);
        assert!(
            next >= start + runtime - 0.001,
            "item {seq} started at {next}, before the one before it ended\n{text}"
        );
    }
}

#[test]
fn async_result_equals_the_sync_call() {
    let env = Env::new();
    up(&env, 3);
    let cases: [&[&str]; 3] = [
        &[
            "px",
            "echo out $PCL_ENGINE_ID; echo err >&2; (exit $PCL_ENGINE_ID)",
        ],
        &["px", "--raw", "printf 'no newline %s' $PCL_ENGINE_ID"],
        &[
            "map",
            "echo {}; echo e{} >&2; exit $(( {} % 3 ))",
            "1",
            "2",
            "3",
            "4",
            "5",
            "6",
        ],
    ];
    for case in cases {
        let sync = env.pcl(case).run();
        let mut args = vec![case[0], "--async"];
        args.extend(&case[1..]);
        let submitted = env.pcl(&args).run().success();
        let id = submitted.stdout_str().trim().to_string();
        assert!(id.parse::<u64>().is_ok(), "job id {id:?}");
        let waited = env.pcl(["wait", &id]).run();
        assert_eq!(waited.status(), sync.status(), "wait {case:?}");
        assert_eq!(waited.stdout, b"");
        let result = env.pcl(["result", &id]).run();
        assert_eq!(result.status(), sync.status(), "{case:?}");
        assert_eq!(result.stdout, sync.stdout, "{case:?}");
        assert_eq!(result.stderr, sync.stderr, "{case:?}");
        // A result can be fetched again.
        assert_eq!(env.pcl(["result", &id]).run().stdout, sync.stdout);
    }
    // An async map from stdin: the CLI leaves, the session keeps a copy.
    let input: String = (0..500).map(|i| format!("{i}\n")).collect();
    let id = env
        .pcl(["map", "--async", "echo x{}", "-"])
        .stdin(input.clone())
        .run()
        .success()
        .stdout_str();
    let result = env.pcl(["result", id.trim()]).run().success();
    let want: String = (0..500).map(|i| format!("x{i}\n")).collect();
    assert_eq!(result.stdout_str(), want);

    let out = env.pcl(["jobs", "--json"]).run().success();
    let jobs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let jobs = jobs["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 4);
    assert!(jobs.iter().all(|j| j["state"] == "done"), "{jobs:?}");
    assert_eq!(jobs[2]["verb"], "map");
    env.pcl(["result", "999"])
        .run()
        .failure()
        .assert_stderr_contains("no job 999");
}

#[test]
fn interrupt_stops_sleep_and_the_shell_state_survives() {
    let env = Env::new();
    up(&env, 2);
    env.px(["v=7; cd /tmp"]).success();
    let px = env.spawn(&["px", "-t", "0", "sleep 1000"]);
    assert!(
        wait_until(Duration::from_secs(10), || !engine_children(
            &env,
            &["sleep", "1000"]
        )
        .is_empty()),
        "sleep 1000 never started"
    );
    let start = Instant::now();
    env.pcl(["interrupt", "-t", "0"]).run().success();
    let (code, _, _, _) = finish(px, Duration::from_secs(5));
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(code, 130);
    assert!(engine_children(&env, &["sleep", "1000"]).is_empty());
    let out = env.px(["-t", "0", "echo $v $PWD"]).success();
    assert_eq!(out.stdout_str(), "[stdout:0] 7 /tmp\n");
}

#[test]
fn interrupt_during_a_map_fails_only_the_running_task() {
    let env = Env::new();
    up(&env, 1);
    // One engine, so the long task and the rest share one batch.
    let map = env.spawn(&[
        "map",
        "if [ {} = 2 ]; then sleep 1000; echo never; fi; echo {}",
        "1",
        "2",
        "3",
        "4",
    ]);
    assert!(
        wait_until(Duration::from_secs(10), || engine_children(
            &env,
            &["sleep", "1000"]
        )
        .len()
            == 1),
        "sleep 1000 never started"
    );
    env.pcl(["interrupt", "-t", "0"]).run().success();
    let (code, stdout, stderr, _) = finish(map, Duration::from_secs(10));
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(String::from_utf8_lossy(&stdout), "1\n3\n4\n");
    assert!(
        stderr.contains("item \"2\" on engine 0 (localhost): failed with status 130"),
        "{stderr}"
    );
}

#[test]
fn ctrl_c_on_a_sync_map_interrupts_and_exits_130() {
    let env = Env::new();
    up(&env, 2);
    let map = env.spawn(&["map", "echo {}; sleep 1000", "1", "2", "3", "4", "5", "6"]);
    assert!(
        wait_until(Duration::from_secs(10), || engine_children(
            &env,
            &["sleep", "1000"]
        )
        .len()
            == 2),
        "sleeps never started"
    );
    // SAFETY: signalling the child this test started.
    unsafe { libc::kill(map.id() as i32, libc::SIGINT) };
    let (code, stdout, stderr, elapsed) = finish(map, Duration::from_secs(10));
    assert_eq!(code, 130, "{stderr}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    // Two items were running (which two depends on the engines' queues),
    // the other four never ran.
    let printed = String::from_utf8_lossy(&stdout).into_owned();
    assert_eq!(printed.lines().count(), 2, "{printed}");
    assert!(stderr.contains("4 items did not run"), "{stderr}");
    assert!(wait_until(Duration::from_secs(2), || engine_children(
        &env,
        &["sleep", "1000"]
    )
    .is_empty()));
    // The engines take work again.
    env.pcl(["map", "echo {}", "x"])
        .run()
        .success()
        .assert_stdout("x\n");
}

#[test]
fn ctrl_c_on_a_sync_px_exits_130_with_what_finished() {
    let env = Env::new();
    up(&env, 2);
    let px = env.spawn(&["px", "echo start $PCL_ENGINE_ID; sleep 1000"]);
    assert!(wait_until(Duration::from_secs(10), || {
        engine_children(&env, &["sleep", "1000"]).len() == 2
    }));
    // SAFETY: signalling the child this test started.
    unsafe { libc::kill(px.id() as i32, libc::SIGINT) };
    let (code, stdout, _, elapsed) = finish(px, Duration::from_secs(10));
    assert_eq!(code, 130);
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    assert_eq!(
        String::from_utf8_lossy(&stdout),
        "[stdout:0] start 0\n[stdout:1] start 1\n"
    );
}

#[test]
fn abort_cancels_an_async_map() {
    let env = Env::new();
    up(&env, 2);
    let mut args = vec!["map", "--async", "sleep 1000 # {}"];
    let items: Vec<String> = (0..20).map(|i| i.to_string()).collect();
    args.extend(items.iter().map(String::as_str));
    let id = env
        .pcl(&args)
        .run()
        .success()
        .stdout_str()
        .trim()
        .to_string();
    assert!(wait_until(Duration::from_secs(10), || {
        engine_children(&env, &["sleep", "1000"]).len() == 2
    }));
    let out = env.pcl(["jobs"]).run().success();
    assert!(
        out.stdout_str()
            .starts_with(&format!("{id}\trunning\t0-1\t")),
        "{}",
        out.stdout_str()
    );
    env.pcl(["abort", &id]).run().success();
    let start = Instant::now();
    env.pcl(["wait", &id]).run().assert_exit(130);
    assert!(start.elapsed() < Duration::from_secs(3));
    let out = env.pcl(["result", &id]).run().assert_exit(130);
    assert!(
        out.stderr.contains("18 items did not run"),
        "{}",
        out.stderr
    );
    assert!(env.pcl(["jobs"]).run().stdout_str().contains("aborted"));
}

#[test]
fn a_killed_engine_host_loses_and_duplicates_nothing() {
    let env = Env::new();
    let mut second = Host::local(2);
    second.host = "local-b".into();
    let cluster = env.write_cluster(&[Host::local(2), second]);
    env.up([&cluster]);
    let hosts = engine_pids(&env.session);
    assert_eq!(hosts.len(), 2, "two engine hosts");
    let mut args = vec!["map", "sleep 0.02; echo {}"];
    let items: Vec<String> = (1..=600).map(|i| i.to_string()).collect();
    args.extend(items.iter().map(String::as_str));
    let map = env.spawn(&args);
    std::thread::sleep(Duration::from_millis(800));
    // SAFETY: killing an engine host of this test's own session.
    unsafe { libc::kill(hosts[1], libc::SIGKILL) };
    let (code, stdout, stderr, _) = finish(map, Duration::from_secs(60));
    assert_eq!(code, 0, "{stderr}");
    let want: String = items.iter().map(|i| format!("{i}\n")).collect();
    assert_eq!(String::from_utf8_lossy(&stdout), want);
}

#[test]
fn progress_shows_on_a_terminal_and_never_in_the_output() {
    let env = Env::new();
    up(&env, 2);
    // About a second of work: the bar is drawn at each task's end.
    let items: Vec<String> = (1..=10).map(|i| i.to_string()).collect();
    let mut args = vec!["map".to_string(), "sleep 0.2; echo {}".to_string()];
    args.extend(items.iter().cloned());
    let want: String = items.iter().map(|i| format!("{i}\n")).collect();

    let out = env.pcl(&args).stderr_on_a_terminal().run().success();
    assert_eq!(out.stdout_str(), want, "{}", out.describe());
    assert!(
        out.stderr.contains("/10 ") && out.stderr.contains("ETA"),
        "no done/total and ETA on the terminal\n{}",
        out.describe()
    );

    let out = env.pcl(&args).run().success();
    assert_eq!(out.stdout_str(), want);
    assert_eq!(out.stderr, "", "stderr is not a terminal: nothing extra");
}

#[test]
fn large_results_behind_a_slow_item_keep_the_daemon_bounded() {
    let env = Env::new();
    up(&env, 2);
    // While item 1 sleeps, the other engine makes 1 MB per item: 299 MB
    // that must wait for it, unless the map stops starting new items.
    let mut args = vec![
        "map".to_string(),
        "if [ {} = 1 ]; then sleep 5; fi; head -c 1000000 /dev/zero | tr '\\0' x; echo {}".into(),
    ];
    args.extend((1..=300).map(|i| i.to_string()));
    let out = env.pcl(&args).timeout_secs(180).run().success();
    let lines = out.stdout_lines();
    assert_eq!(lines.len(), 300);
    for (i, line) in lines.iter().enumerate() {
        assert!(
            line.len() == 1_000_000 + (i + 1).to_string().len()
                && line.ends_with(&(i + 1).to_string()),
            "result {} is not item {}'s",
            i,
            i + 1
        );
    }
    let peak = status_kib(daemon_pids(&env.session)[0], "VmHWM");
    assert!(peak < 160 << 10, "the daemon's resident peak is {peak} KiB");
}

#[test]
fn a_task_s_stderr_holds_the_user_s_words_only() {
    let env = Env::new();
    env.up([env.cluster_local(1)]);
    let out = env
        .pcl(["map", "nosuchcommand-{}; echo own >&2; exit 2", "a"])
        .run()
        .assert_exit(1);
    assert!(
        out.stderr
            .contains("bash: nosuchcommand-a: command not found\nown\n"),
        "{}",
        out.describe()
    );
    // Killed by its timeout, or by a signal: the status says so, and the
    // shell's job report (`Terminated`) is not part of the task's stderr.
    for args in [
        vec!["map", "--timeout", "1", "sleep {}", "30"],
        vec!["map", "kill -TERM $BASHPID; echo {}", "b"],
    ] {
        let out = env.pcl(&args).run().assert_exit(1);
        assert!(
            !out.stderr.contains("Terminated"),
            "{args:?}\n{}",
            out.describe()
        );
        assert!(!out.stderr.contains("pcl-engine-"), "{}", out.describe());
    }
}
