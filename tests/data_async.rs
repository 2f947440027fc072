//! `--async` on push, pull, scatter and gather (`pcl result` prints what
//! the sync call would have, with its status), and Ctrl-C on a sync
//! transfer (exit 130, no temporary file left on any engine or here).

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `n` local hosts of one engine each, every one with its own workdir, up.
fn up_separate_hosts(env: &Env, n: usize) -> Vec<PathBuf> {
    let (cluster, dirs) = separate_hosts(env, n, &[]);
    env.up([&cluster]);
    dirs
}

/// `case` with `--async` right after its verb.
fn with_async(case: &[String]) -> Vec<String> {
    let mut args = vec![case[0].clone(), "--async".into()];
    args.extend(case[1..].iter().cloned());
    args
}

/// Run `case` sync, then async; `pcl wait` and `pcl result` must give
/// the sync call's status, and `result` its stdout and stderr exactly.
fn assert_async_equals_sync(env: &Env, case: &[String], stdin: &[u8]) -> Output {
    let sync = env.pcl(case).stdin(stdin.to_vec()).run();
    let submitted = env
        .pcl(with_async(case))
        .stdin(stdin.to_vec())
        .run()
        .success();
    let id = submitted.stdout_str().trim().to_string();
    assert!(id.parse::<u64>().is_ok(), "job id {id:?} for {case:?}");
    let waited = env.pcl(["wait", &id]).run();
    assert_eq!(waited.status(), sync.status(), "wait {case:?}");
    let result = env.pcl(["result", &id]).run();
    assert_eq!(
        result.status(),
        sync.status(),
        "{case:?}\n{}",
        sync.describe()
    );
    assert_eq!(
        result.stdout,
        sync.stdout,
        "{case:?}\n{}",
        result.describe()
    );
    assert_eq!(
        result.stderr,
        sync.stderr,
        "{case:?}\n{}",
        result.describe()
    );
    sync
}

fn words(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

#[test]
fn async_result_equals_the_sync_call_for_every_data_verb() {
    let env = Env::new();
    let dirs = up_separate_hosts(&env, 3);
    env.px(["a=$PCL_ENGINE_ID"]).success();
    env.px(["-t", "1", "unset a"]).success();
    env.px(["-t", "0", "echo only here > only0.txt"]).success();
    let lines: String = (0..100).map(|i| format!("line {i}\n")).collect();
    let input = env.write("lines.txt", &lines);
    let input = input.to_string_lossy().into_owned();
    let local = env.write(
        "local.bin",
        (0..=255u8).cycle().take(3 << 20).collect::<Vec<_>>(),
    );
    let local = local.to_string_lossy().into_owned();
    let none = b"".as_slice();
    let cases: Vec<(Vec<String>, &[u8], Option<i32>)> = vec![
        (words(&["push", "v=it's \"$x\"\n", "w="]), none, Some(0)),
        (words(&["pull", "v", "w"]), none, Some(0)),
        (words(&["pull", "a"]), none, Some(1)),
        (words(&["pull", "--json", "a", "v"]), none, Some(1)),
        (words(&["pull", "-t", "2", "--raw", "v"]), none, Some(0)),
        (words(&["push", "-t", "nohost", "x=1"]), none, Some(1)),
        (
            words(&["scatter", "x", "1", "2", "3", "4", "5"]),
            none,
            Some(0),
        ),
        (words(&["gather", "x"]), none, Some(0)),
        (words(&["gather", "--json", "x"]), none, Some(0)),
        (words(&["gather", "a"]), none, Some(1)),
        (
            words(&["scatter", "y", "--from", "-"]),
            lines.as_bytes(),
            Some(0),
        ),
        (words(&["gather", "y"]), none, Some(0)),
        (
            words(&["scatter", "--file", "part", "--from", &input]),
            none,
            Some(0),
        ),
        (
            words(&["scatter", "--file", "p2", "--from", "-"]),
            lines.as_bytes(),
            Some(0),
        ),
        (words(&["gather", "--file", "p2"]), none, Some(0)),
        (words(&["gather", "--file", "only0.txt"]), none, Some(1)),
        (words(&["push", "--file", &local]), none, Some(0)),
        (
            words(&["push", "--json", "--file", "-", "in/s.txt"]),
            lines.as_bytes(),
            Some(0),
        ),
        (words(&["gather", "--file", "in/s.txt"]), none, Some(0)),
    ];
    for (case, stdin, status) in &cases {
        let sync = assert_async_equals_sync(&env, case, stdin);
        assert_eq!(sync.status(), *status, "{case:?}\n{}", sync.describe());
    }
    // Blocks of stdin really arrived, through the async call too.
    let gathered = env.pcl(["gather", "--file", "p2"]).run().success();
    assert_eq!(gathered.stdout_str(), lines);
    for dir in &dirs {
        assert_eq!(
            std::fs::read_to_string(dir.join("in/s.txt")).unwrap(),
            lines
        );
    }

    // `pull --file`: the async job writes its files when `pcl result`
    // runs (not at `pcl wait`), where the sync call wrote them.
    let dest = env.path().join("got");
    let case = words(&["pull", "--file", "only0.txt", "--dest", "got"]);
    let sync = env.pcl(&case).run().assert_exit(1);
    assert_eq!(
        std::fs::read_to_string(dest.join("only0.txt.0")).unwrap(),
        "only here\n"
    );
    std::fs::remove_dir_all(&dest).unwrap();
    let id = env.pcl(with_async(&case)).run().success().stdout_str();
    let id = id.trim();
    env.pcl(["wait", id]).run().assert_exit(1);
    assert!(!dest.exists(), "pcl wait wrote files");
    // From elsewhere: a relative --dest means where the call was made.
    let result = env
        .pcl(["result", id])
        .current_dir(&dirs[2])
        .run()
        .assert_exit(1);
    assert_eq!(result.stdout, sync.stdout);
    assert_eq!(result.stderr, sync.stderr);
    assert_eq!(
        std::fs::read_to_string(dest.join("only0.txt.0")).unwrap(),
        "only here\n"
    );
    assert!(!dest.join("only0.txt.1").exists());
    assert!(
        pcl_temp_files(&dest).is_empty(),
        "{:?}",
        pcl_temp_files(&dest)
    );
    let json = words(&["pull", "--json", "--file", "only0.txt", "--dest", "got"]);
    assert_async_equals_sync(&env, &json, none);

    // Spooled stdin went once read; the kept files go at `pcl down`.
    let session_dir = env.runtime_dir().join("pcl").join(&env.session);
    let names = |dir: &Path| -> Vec<String> {
        std::fs::read_dir(dir)
            .map(|d| {
                d.filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned()))
                    .collect()
            })
            .unwrap_or_default()
    };
    let spools: Vec<String> = names(&session_dir)
        .into_iter()
        .filter(|n| n.ends_with(".spool"))
        .collect();
    assert!(spools.is_empty(), "{spools:?}");
    assert!(!names(&session_dir.join("jobs")).is_empty());
    env.down();
    assert!(names(&session_dir.join("jobs")).is_empty());
}

/// A file a transfer finished before the abort stays; no half file does.
fn assert_whole_or_absent(path: &Path, len: u64) {
    if let Ok(meta) = std::fs::metadata(path) {
        assert_eq!(meta.len(), len, "half a file at {}", path.display());
    }
}

#[test]
fn ctrl_c_on_a_transfer_exits_130_and_leaves_no_temp_file() {
    let env = Env::new();
    let dirs = up_separate_hosts(&env, 2);
    let big = env.path().join("big.bin");
    std::fs::write(&big, XorShift(0x9e3779b97f4a7c15).bytes(384 << 20)).unwrap();
    let push = env.spawn(&["push", "--file", &big.to_string_lossy()]);
    assert!(
        wait_until(Duration::from_secs(60), || dirs
            .iter()
            .all(|d| !pcl_temp_files(d).is_empty())),
        "the transfer never started"
    );
    // SAFETY: signalling the child this test started.
    unsafe { libc::kill(push.id() as i32, libc::SIGINT) };
    let (code, _, stderr, _) = finish(push, Duration::from_secs(20));
    assert_eq!(code, 130, "{stderr}");
    assert!(stderr.contains("aborted"), "{stderr}");
    // Each host drops its temporary file once it hears of the abort, which
    // with relaying can be after the CLI has gone.
    for dir in &dirs {
        assert!(
            wait_until(Duration::from_secs(10), || pcl_temp_files(dir).is_empty()),
            "{:?}",
            pcl_temp_files(dir)
        );
        assert_whole_or_absent(&dir.join("big.bin"), 384 << 20);
    }

    // The same for a pull --file: nothing partial here either.
    env.px(["head -c 256M /dev/zero > zeros"]).success();
    let dest = env.path().join("back");
    let pull = env.spawn(&["pull", "--file", "zeros", "--dest", &dest.to_string_lossy()]);
    assert!(
        wait_until(Duration::from_secs(60), || !pcl_temp_files(&dest)
            .is_empty()),
        "the download never started"
    );
    // SAFETY: as above.
    unsafe { libc::kill(pull.id() as i32, libc::SIGINT) };
    let (code, _, stderr, _) = finish(pull, Duration::from_secs(20));
    assert_eq!(code, 130, "{stderr}");
    assert!(
        pcl_temp_files(&dest).is_empty(),
        "{:?}",
        pcl_temp_files(&dest)
    );
    for id in 0..2 {
        assert_whole_or_absent(&dest.join(format!("zeros.{id}")), 256 << 20);
    }

    // An aborted async push: its result says so, with status 130.
    let id = env
        .pcl([
            "push",
            "--async",
            "--file",
            &big.to_string_lossy(),
            "again.bin",
        ])
        .run()
        .success()
        .stdout_str();
    let id = id.trim();
    assert!(wait_until(Duration::from_secs(60), || dirs
        .iter()
        .any(|d| !pcl_temp_files(d).is_empty())));
    env.pcl(["abort", id]).run().success();
    env.pcl(["wait", id]).run().assert_exit(130);
    env.pcl(["result", id])
        .run()
        .assert_exit(130)
        .assert_stderr_contains("aborted");
    // As above: with relaying, a host down the chain hears of the abort
    // from its upstream peer, maybe after the job has ended.
    for dir in &dirs {
        assert!(
            wait_until(Duration::from_secs(10), || pcl_temp_files(dir).is_empty()),
            "{:?}",
            pcl_temp_files(dir)
        );
        assert_whole_or_absent(&dir.join("again.bin"), 384 << 20);
    }
    env.px(["echo still fine"]).success();
}

#[test]
fn every_async_verb_lists_its_engines_in_jobs() {
    let env = Env::new();
    env.up([env.cluster_local(3)]);
    let file = env.write("f.txt", "a\nb\nc\n");
    let file = file.to_str().unwrap();
    env.pcl(["push", "x=1"]).run().success();
    let calls: Vec<Vec<&str>> = vec![
        vec!["px", "-t", "0,2", "true"],
        vec!["map", "-t", "0,2", "true", "1"],
        vec!["push", "-t", "0,2", "y=2"],
        vec!["push", "-t", "0,2", "--file", file, "f.txt"],
        vec!["pull", "-t", "0,2", "x"],
        vec!["pull", "-t", "0,2", "--file", "f.txt", "--dest", "got"],
        vec!["scatter", "-t", "0,2", "xs", "1", "2"],
        vec!["gather", "-t", "0,2", "x"],
    ];
    for call in &calls {
        let mut args = vec![call[0], "--async"];
        args.extend(&call[1..]);
        let id = env.pcl(&args).run().success().stdout_str();
        env.pcl(["wait", id.trim()]).run().success();
    }
    let out = env.pcl(["jobs", "--json"]).run().success();
    let jobs: serde_json::Value = serde_json::from_str(&out.stdout_str()).unwrap();
    let jobs = jobs["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), calls.len(), "{jobs:?}");
    for (job, call) in jobs.iter().zip(&calls) {
        assert_eq!(job["engines"], serde_json::json!([0, 2]), "{call:?}: {job}");
    }
}
