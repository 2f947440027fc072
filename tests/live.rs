//! px output while commands run: lines as they come (`--stream`, a
//! terminal's default), the first unfinished engine's lines as they come in
//! engine order (a pipe), never a line cut into another, and a footer on a
//! terminal only. Times are compared with the command's own end, loosely,
//! never with a clock's absolute speed.

mod common;

use common::*;
use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

/// Run `pcl ARGS` and note when each stdout line arrived, relative to the
/// process's end: (seconds before the end, line).
fn lines_before_end(env: &Env, args: &[&str]) -> Vec<(f64, String)> {
    let mut child = env.spawn(args);
    let stdout = child.stdout.take().unwrap();
    let mut stamped = Vec::new();
    for line in BufReader::new(stdout).lines() {
        stamped.push((Instant::now(), line.unwrap()));
    }
    let status = child.wait().unwrap();
    let end = Instant::now();
    assert!(status.success(), "pcl {args:?}: {status}");
    stamped
        .into_iter()
        .map(|(at, line)| ((end - at).as_secs_f64(), line))
        .collect()
}

#[test]
fn streamed_lines_arrive_while_the_command_runs() {
    let env = Env::new();
    env.up([env.cluster_local(3)]);
    let lines = lines_before_end(
        &env,
        &[
            "px",
            "--stream",
            "for i in 1 2 3; do echo \"$PCL_ENGINE_ID:$i\"; sleep 1; done",
        ],
    );
    assert_eq!(lines.len(), 9, "{lines:?}");
    for id in 0..3 {
        let (early, line) = lines
            .iter()
            .find(|(_, l)| l.starts_with(&format!("[stdout:{id}] {id}:1")))
            .unwrap_or_else(|| panic!("no first line of engine {id}: {lines:?}"));
        assert!(*early > 1.0, "{line} came {early:.2} s before the end");
    }
}

#[test]
fn in_a_pipe_the_first_engine_prints_before_the_slowest_ends() {
    let env = Env::new();
    env.up([env.cluster_local(3)]);
    let command = "if [ $PCL_ENGINE_ID = 0 ]; then echo first; sleep 1; echo second; \
                   else sleep 3; echo later; fi";
    let lines = lines_before_end(&env, &["px", command]);
    let text: Vec<&str> = lines.iter().map(|(_, l)| l.as_str()).collect();
    // The bytes are engine order, as always in a pipe.
    assert_eq!(
        text,
        [
            "[stdout:0] first",
            "[stdout:0] second",
            "[stdout:1] later",
            "[stdout:2] later"
        ]
    );
    assert!(
        lines[0].0 > 1.5,
        "engine 0 waited for the others: {lines:?}"
    );
}

#[test]
fn an_engine_that_ended_is_free_while_its_hosts_slowest_still_runs() {
    let env = Env::new();
    env.up([env.cluster_local(2)]);
    // Both engines answer on one stream from their engine host, where an
    // engine's end may wait a moment for the other's to share a packet:
    // only a moment.
    let child = env.spawn(&["px", "if [ $PCL_ENGINE_ID = 1 ]; then sleep 60; fi"]);
    let free = wait_until(Duration::from_secs(15), || {
        let v = env.status_json();
        engine_state(&v, 0) == "idle" && engine_state(&v, 1) == "busy"
    });
    assert!(
        free,
        "engine 0 not idle beside a busy engine 1: {}",
        env.status_json()
    );
    env.pcl(["interrupt"]).run().success();
    let (code, _, stderr, _) = finish(child, Duration::from_secs(15));
    assert_eq!(code, 130, "{stderr}");
}

#[test]
fn interleaved_lines_are_never_cut_and_long_ones_come_in_prefixed_pieces() {
    let env = Env::new();
    env.up([env.cluster_local(3)]);
    let body = "x".repeat(100);
    let out = env
        .pcl([
            "px",
            "--stream",
            &format!("for i in $(seq 2000); do echo \"$PCL_ENGINE_ID-{body}\"; done"),
        ])
        .run()
        .success();
    let mut counts = [0; 3];
    for line in out.stdout_lines() {
        let (prefix, rest) = line.split_once("] ").expect("a prefixed line");
        let id: usize = prefix.strip_prefix("[stdout:").unwrap().parse().unwrap();
        assert_eq!(rest, format!("{id}-{body}"), "a cut line: {line:?}");
        counts[id] += 1;
    }
    assert_eq!(counts, [2000; 3]);

    // One line of 200 KiB without a newline till the end: three pieces of
    // 64 KiB and the rest, each on a line of its own.
    let out = env
        .pcl([
            "px",
            "--stream",
            "-t",
            "0",
            "head -c 204800 /dev/zero | tr '\\0' y",
        ])
        .run()
        .success();
    let lines = out.stdout_lines();
    let sizes: Vec<usize> = lines
        .iter()
        .map(|l| l.strip_prefix("[stdout:0] ").expect("prefixed").len())
        .collect();
    assert_eq!(sizes, [65536, 65536, 65536, 8192], "{} lines", lines.len());
}

#[test]
fn the_footer_shows_on_a_terminal_only() {
    let env = Env::new();
    env.up([env.cluster_local(2)]);
    let command = "sleep $((2 * PCL_ENGINE_ID + 1)); echo done";
    let out = env
        .pcl(["px", command])
        .stderr_on_a_terminal()
        .run()
        .success();
    assert!(
        out.stderr.contains("engines finished; running: 1"),
        "{}",
        out.describe()
    );
    assert_eq!(out.stdout_str(), "[stdout:0] done\n[stdout:1] done\n");
    let out = env.pcl(["px", command]).run().success();
    assert_eq!(out.stderr, "", "a footer in a pipe");
    assert_eq!(out.stdout_str(), "[stdout:0] done\n[stdout:1] done\n");
}
