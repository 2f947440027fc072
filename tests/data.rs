//! push, pull, scatter and gather: variables round-trip byte for byte,
//! names are checked before any engine is touched, lines are split in
//! ipyparallel's blocks, files are streamed, checked and renamed into place
//! (full disks and killed engines included).

mod common;

use common::*;
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::Path;
use std::time::Duration;

/// ipyparallel's block sizes (dist='b').
fn blocks(total: usize, n: usize) -> Vec<usize> {
    (0..n)
        .map(|k| total / n + usize::from(k < total % n))
        .collect()
}

fn lines_of(text: &[u8]) -> Vec<&[u8]> {
    text.split_inclusive(|&b| b == b'\n').collect()
}

#[test]
fn values_round_trip_byte_for_byte() {
    let env = Env::new();
    env.up([env.cluster_local(2)]);
    let mut values: Vec<Vec<u8>> = [
        "",
        "plain",
        "it's \"quoted\"",
        "$HOME $(echo no) ${x} `echo no` \\ \\n",
        "line1\nline2",
        "trailing newlines\n\n\n",
        "\n",
        "tab\there; semicolon & pipe | glob * ? [a]",
        "UTF-8: héllo wörld ✓ 日本語 🚀",
        "-n",
        "=x=",
        "'",
        "$'\\x41'",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    values.push(b"\xff\xfe not UTF-8 \x80".to_vec());
    let mut rng = XorShift(0x5eed_1234_abcd);
    for _ in 0..40 {
        let len = rng.below(300) as usize;
        values.push(rng.value(len));
    }
    values.push(rng.value(100_000));

    let args: Vec<OsString> = std::iter::once(OsString::from("push"))
        .chain(values.iter().enumerate().map(|(i, v)| {
            let mut a = format!("v{i}=").into_bytes();
            a.extend_from_slice(v);
            OsString::from_vec(a)
        }))
        .collect();
    env.pcl(args).run().success().assert_stdout("");
    for (i, v) in values.iter().enumerate() {
        let name = format!("v{i}");
        let out = env.pcl(["pull", "-t", "1", "--raw", &name]).run().success();
        assert_eq!(out.stdout, *v, "pull --raw {name}\n{}", out.describe());
        // The shell itself holds exactly those bytes.
        let out = env
            .pcl(["px", "-t", "0", "--raw", &format!("printf %s \"${name}\"")])
            .run()
            .success();
        assert_eq!(out.stdout, *v, "the engine's ${name}\n{}", out.describe());
    }

    // Text output: one `[ID] ` line per line of the value.
    env.pcl(["pull", "v4"])
        .run()
        .success()
        .assert_stdout("[0] line1\n[0] line2\n[1] line1\n[1] line2\n");
    env.pcl(["pull", "v0"])
        .run()
        .success()
        .assert_stdout("[0] \n[1] \n");
    env.pcl(["pull", "v1", "v8"]).run().success().assert_stdout(
        "[0:v1] plain\n[0:v8] UTF-8: héllo wörld ✓ 日本語 🚀\n\
         [1:v1] plain\n[1:v8] UTF-8: héllo wörld ✓ 日本語 🚀\n",
    );
    let out = env.pcl(["pull", "--json", "v5", "v8"]).run().success();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for (i, r) in doc["results"].as_array().unwrap().iter().enumerate() {
        assert_eq!(r["id"], i as u64, "{doc}");
        assert_eq!(r["status"], 0, "{doc}");
        assert_eq!(r["values"]["v5"], "trailing newlines\n\n\n", "{doc}");
        assert_eq!(r["values"]["v8"], "UTF-8: héllo wörld ✓ 日本語 🚀", "{doc}");
    }
    // A pushed value replaces a scattered array whole.
    env.pcl(["scatter", "-t", "0", "arr", "a", "b", "c"])
        .run()
        .success();
    env.pcl(["push", "arr=one"]).run().success();
    env.pcl(["gather", "-t", "0", "arr"])
        .run()
        .success()
        .assert_stdout("one\n");
    // --raw wants one engine.
    env.pcl(["pull", "--raw", "v1"])
        .run()
        .assert_exit(1)
        .assert_stderr_contains("exactly one target");
}

#[test]
fn one_mib_value_round_trips() {
    let env = Env::new();
    env.up([env.cluster_local(1)]);
    let mut rng = XorShift(42);
    let mut value = rng.value(1 << 20);
    value.extend_from_slice(b"\n\n");
    let file = env.write("big.val", &value);
    env.pcl(["push", "--file", &file.to_string_lossy(), "big.val"])
        .run()
        .success();
    // `$(...)` drops trailing newlines; the `x` guard keeps them.
    env.px(["v=$(cat big.val; printf x); v=${v%x}"]).success();
    let out = env.pcl(["pull", "--raw", "v"]).run().success();
    assert!(
        out.stdout == value,
        "1 MiB value differs (got {} bytes)",
        out.stdout.len()
    );
    let out = env.pcl(["gather", "v"]).run().success();
    let mut expected = value.clone();
    expected.push(b'\n');
    assert!(out.stdout == expected, "gather of a 1 MiB scalar");
}

#[test]
fn invalid_input_is_refused_before_any_engine_is_touched() {
    // No session at all: the refusal comes first, with exit status 2.
    let env = Env::new();
    env.pcl(["push", "a;rm -rf x=1"])
        .run()
        .assert_exit(2)
        .assert_stderr_contains("invalid variable name `a;rm -rf x`");

    env.up([env.cluster_local(2)]);
    let victim = env.home().join("victim");
    std::fs::write(&victim, "still here").unwrap();
    let bad: &[&[&str]] = &[
        &["push", "a;rm -f victim;b=1"],
        &["push", "ok=1", "$(rm -f victim)=2"],
        &["push", "1x=1"],
        &["push", "noequals"],
        &["pull", "a b"],
        &["pull", "ok", "x;rm -f victim"],
        &["scatter", "x-y", "1", "2"],
        &["gather", "`rm -f victim`"],
        &["push", "--file", "/etc/hostname", "/tmp/abs"],
        &["push", "--file", "/etc/hostname", "../victim"],
        &["pull", "--file", "a/../../victim"],
        &["gather", "--file", "/etc/passwd"],
        &["scatter", "--file", "../x", "--from", "/etc/hostname"],
    ];
    for args in bad {
        let out = env.pcl(*args).run().assert_exit(2);
        assert!(
            out.stdout.is_empty(),
            "nothing printed for {args:?}\n{}",
            out.describe()
        );
    }
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "still here");
    let out = env.pcl(["status", "--json"]).run().success();
    assert!(!out.stdout_str().contains("\"busy\""), "{}", out.describe());
    // The engines never saw a thing: `ok` was not set either.
    env.pcl(["pull", "ok"])
        .run()
        .assert_exit(1)
        .assert_stderr_contains("not set");
}

#[test]
fn unset_variable_is_an_error_for_that_engine_only() {
    let env = Env::new();
    env.up([env.cluster_local(3)]);
    env.pcl(["px", "-t", "0,2", "u='set here'"]).run().success();
    env.pcl(["pull", "u"])
        .run()
        .assert_exit(1)
        .assert_stdout("[0] set here\n[2] set here\n")
        .assert_stderr_contains("engine 1 (localhost): variable `u` is not set");
    let out = env.pcl(["pull", "--json", "u"]).run().assert_exit(1);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let statuses: Vec<u64> = doc["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, vec![0, 1, 0], "{doc}");
    assert_eq!(doc["results"][1]["values"], serde_json::json!({}), "{doc}");
    env.pcl(["gather", "u"])
        .run()
        .assert_exit(1)
        .assert_stdout("set here\nset here\n")
        .assert_stderr_contains("engine 1");
    // `set -u` or `set -e` in the user's shell changes nothing.
    env.px(["set -eu"]).success();
    env.pcl(["pull", "-t", "1", "u"]).run().assert_exit(1);
    env.pcl(["pull", "-t", "0", "u"])
        .run()
        .success()
        .assert_stdout("[0] set here\n");
    // Nor does `set -x` (traces on stderr are no error); a readonly
    // variable is one, for each engine, and `export` survives a push.
    env.px(["set -x; readonly ro=1; export ex=1"]).success();
    env.pcl(["push", "ok=1", "ex=2"]).run().success();
    env.pcl(["scatter", "arr", "a", "b", "c"]).run().success();
    env.pcl(["gather", "arr"])
        .run()
        .success()
        .assert_stdout("a\nb\nc\n");
    env.pcl(["push", "ro=2"])
        .run()
        .assert_exit(1)
        .assert_stderr_contains("readonly");
    env.pcl(["px", "-t", "0", "printenv ex"])
        .run()
        .success()
        .assert_stdout("[stdout:0] 2\n");
    // The user's options are back as they were.
    let flags = env.pcl(["px", "-t", "0", "echo $-"]).run().success();
    let flags = flags.stdout_str();
    assert!(
        flags.contains('e') && flags.contains('u') && flags.contains('x'),
        "{flags}"
    );
    // Attributes that would change the bytes go: a value is a value.
    env.px(["declare -l low; declare -i int"]).success();
    env.pcl(["push", "low=ABC", "int=1+1"]).run().success();
    env.pcl(["pull", "-t", "2", "low", "int"])
        .run()
        .success()
        .assert_stdout("[2:low] ABC\n[2:int] 1+1\n");
    env.px(["echo alive"]).success();
}

fn line_input(n: usize) -> Vec<u8> {
    let mut text = Vec::new();
    for i in 0..n {
        let line = match i % 5 {
            0 => format!("{i}"),
            1 => format!("line {i} with 'quotes' \"dq\" $HOME `x` \\ and\ttab"),
            2 => String::new(),
            3 => format!("  {i} ünïcødé ✓ *?[]"),
            _ => format!("{i};{i}|{i}&"),
        };
        text.extend_from_slice(line.as_bytes());
        text.push(b'\n');
    }
    text
}

#[test]
fn scatter_gather_100001_lines_over_3_and_7_engines() {
    let input = line_input(100_001);
    for n in [3usize, 7] {
        let env = Env::named(&format!("sg{n}"));
        env.up([env.cluster_local(n)]);
        let file = env.write("input.txt", &input);
        if n == 3 {
            env.pcl(["scatter", "x", "--from", &file.to_string_lossy()])
                .run()
                .success();
        } else {
            // From stdin, through the socket and the daemon's spool.
            env.pcl(["scatter", "x", "--from", "-"])
                .stdin(input.clone())
                .run()
                .success();
        }
        let out = env.pcl(["gather", "x"]).run().success();
        assert!(out.stdout == input, "gather over {n} engines differs");
        let counts: Vec<usize> = px_stdout_lines(&env.px(["echo ${#x[@]}"]).success())
            .iter()
            .map(|(_, t)| t.parse().unwrap())
            .collect();
        assert_eq!(counts, blocks(100_001, n), "block sizes over {n} engines");
        // Engine 1's first element is the first line of its block.
        let first = String::from_utf8(lines_of(&input)[blocks(100_001, n)[0]].to_vec()).unwrap();
        env.pcl(["pull", "-t", "1", "--raw", "x"])
            .run()
            .success()
            .assert_stdout(first.trim_end_matches('\n'));
        let spools: Vec<_> = std::fs::read_dir(env.runtime_dir().join("pcl").join(&env.session))
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("spool"))
            .collect();
        assert!(spools.is_empty(), "stdin spool left: {spools:?}");
    }
}

#[test]
fn scatter_more_engines_than_items_leaves_empty_arrays() {
    let env = Env::new();
    env.up([env.cluster_local(4)]);
    env.pcl(["scatter", "x", "a b", "c\nd"]).run().success();
    let counts: Vec<(u32, String)> = px_stdout_lines(&env.px(["echo ${#x[@]}"]).success());
    assert_eq!(
        counts.iter().map(|(_, c)| c.as_str()).collect::<Vec<_>>(),
        vec!["1", "1", "0", "0"]
    );
    let out = env.pcl(["gather", "--json", "x"]).run().success();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let items: Vec<serde_json::Value> = doc["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["items"].clone())
        .collect();
    assert_eq!(
        items,
        vec![
            serde_json::json!(["a b"]),
            serde_json::json!(["c\nd"]),
            serde_json::json!([]),
            serde_json::json!([])
        ]
    );
    env.pcl(["gather", "x"])
        .run()
        .success()
        .assert_stdout("a b\nc\nd\n");
    env.pcl(["scatter", "-t", "1-2", "y", "--", "-1", "-2", "-3"])
        .run()
        .success();
    env.pcl(["gather", "-t", "1-2", "y"])
        .run()
        .success()
        .assert_stdout("-1\n-2\n-3\n");
    env.pcl(["scatter", "empty"]).run().success();
    env.pcl(["gather", "empty"])
        .run()
        .success()
        .assert_stdout("");
}

#[test]
fn scatter_file_then_px_then_gather_and_pull_files() {
    let env = Env::new();
    let (cluster, dirs) = separate_hosts(&env, 3, &[]);
    env.up([&cluster]);
    let input: Vec<u8> = (1..=10_000)
        .flat_map(|i| format!("{i}\n").into_bytes())
        .collect();
    let file = env.write("input.txt", &input);
    env.pcl([
        "scatter",
        "--file",
        "part.txt",
        "--from",
        &file.to_string_lossy(),
    ])
    .run()
    .success()
    .assert_stdout("");
    env.px(["tac part.txt > out.txt"]).success();
    env.pcl(["gather", "--file", "part.txt"])
        .run()
        .success()
        .assert_stdout(&String::from_utf8(input.clone()).unwrap());

    let lines = lines_of(&input);
    let mut expected_out = Vec::new();
    let mut blocks_out = Vec::new();
    let mut start = 0;
    for size in blocks(lines.len(), 3) {
        let block: Vec<u8> = lines[start..start + size]
            .iter()
            .rev()
            .flat_map(|l| l.to_vec())
            .collect();
        expected_out.extend_from_slice(&block);
        blocks_out.push(block);
        start += size;
    }
    let out = env.pcl(["gather", "--file", "out.txt"]).run().success();
    assert!(out.stdout == expected_out, "gather --file out.txt");

    let dest = env.path().join("results");
    env.pcl([
        "pull",
        "--file",
        "out.txt",
        "--dest",
        &dest.to_string_lossy(),
    ])
    .run()
    .success()
    .assert_stdout("");
    for (i, block) in blocks_out.iter().enumerate() {
        let got = std::fs::read(dest.join(format!("out.txt.{i}"))).unwrap();
        assert!(got == *block, "results/out.txt.{i}");
    }
    for dir in &dirs {
        assert!(pcl_temp_files(dir).is_empty(), "{:?}", pcl_temp_files(dir));
    }
    assert!(
        pcl_temp_files(&dest).is_empty(),
        "{:?}",
        pcl_temp_files(&dest)
    );

    // From stdin, into a subdirectory.
    env.pcl(["scatter", "--file", "sub/p.txt", "--from", "-"])
        .stdin("a\nb\nc\nd\n")
        .run()
        .success();
    let got: Vec<String> = dirs
        .iter()
        .map(|d| std::fs::read_to_string(d.join("sub/p.txt")).unwrap())
        .collect();
    assert_eq!(got, vec!["a\nb\n", "c\n", "d\n"]);

    // Push from stdin; a pipe given by name is refused (the daemon could
    // not open the CLI's /dev/fd).
    env.pcl(["push", "--file", "-", "from-stdin.txt"])
        .stdin("piped\n")
        .run()
        .success();
    for dir in &dirs {
        assert_eq!(
            std::fs::read_to_string(dir.join("from-stdin.txt")).unwrap(),
            "piped\n"
        );
    }
    env.pcl(["push", "--file", "-"]).run().assert_exit(2);
    env.pcl(["push", "--file", "/dev/null", "x"])
        .run()
        .assert_exit(1)
        .assert_stderr_contains("not a regular file");

    // A JSON document per call.
    let out = env
        .pcl(["gather", "--file", "sub/p.txt", "--json"])
        .run()
        .success();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["results"][1]["data"], "c\n", "{doc}");
}

#[test]
fn scatter_file_refuses_engines_sharing_a_workdir() {
    let env = Env::new();
    env.up([env.cluster_local(2)]);
    let file = env.write("in.txt", "1\n2\n");
    env.pcl(["scatter", "--file", "p", "--from", &file.to_string_lossy()])
        .run()
        .assert_exit(1)
        .assert_stderr_contains("share the workdir");
    env.pcl([
        "scatter",
        "-t",
        "1",
        "--file",
        "p",
        "--from",
        &file.to_string_lossy(),
    ])
    .run()
    .success();
    // Push copies once per host and reports every engine.
    let out = env
        .pcl([
            "push",
            "--json",
            "--file",
            &file.to_string_lossy(),
            "copy.txt",
        ])
        .run()
        .success();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["results"].as_array().unwrap().len(), 2, "{doc}");
    assert_eq!(
        std::fs::read_to_string(env.home().join("copy.txt")).unwrap(),
        "1\n2\n"
    );
}

#[test]
fn missing_files_are_clear_errors() {
    let env = Env::new();
    let (cluster, _dirs) = separate_hosts(&env, 2, &[]);
    env.up([&cluster]);
    env.pcl(["push", "--file", "/nonexistent/local.bin"])
        .run()
        .assert_exit(1)
        .assert_stderr_contains("cannot read /nonexistent/local.bin");
    env.pcl(["scatter", "x", "--from", "/nonexistent/lines"])
        .run()
        .assert_exit(1)
        .assert_stderr_contains("cannot read /nonexistent/lines");
    env.pcl(["px", "-t", "0", "echo hi > only0.txt"])
        .run()
        .success();
    env.pcl(["gather", "--file", "only0.txt"])
        .run()
        .assert_exit(1)
        .assert_stdout("hi\n")
        .assert_stderr_contains("engine 1 (h1): cannot read only0.txt: No such file");
    let dest = env.path().join("got");
    env.pcl([
        "pull",
        "--file",
        "only0.txt",
        "--dest",
        &dest.to_string_lossy(),
    ])
    .run()
    .assert_exit(1)
    .assert_stderr_contains("engine 1");
    assert_eq!(
        std::fs::read_to_string(dest.join("only0.txt.0")).unwrap(),
        "hi\n"
    );
    assert!(!dest.join("only0.txt.1").exists());
    assert!(
        pcl_temp_files(&dest).is_empty(),
        "{:?}",
        pcl_temp_files(&dest)
    );
    env.pcl(["gather", "--file", "."]).run().assert_exit(2);
}

#[test]
fn netns_push_then_pull_64mib_on_four_hosts() {
    let Some(hosts) = NetnsHosts::new(4) else {
        return;
    };
    let env = Env::new();
    // Namespaces share one file system: a workdir per host keeps them apart.
    let hs: Vec<Host> = (0..4)
        .map(|i| {
            hosts
                .host(i)
                .engines(1)
                .workdir(&env.path().join(format!("w{i}")).to_string_lossy())
        })
        .collect();
    let cluster = env.write_cluster(&hs);
    env.up([&cluster]);
    let data = XorShift(0x64).bytes(64 << 20);
    let sum = sha256_hex(&data);
    let file = env.write("data.bin", &data);
    env.pcl(["push", "--file", &file.to_string_lossy(), "in/data.bin"])
        .timeout_secs(120)
        .run()
        .success();
    let out = env.px(["sha256sum in/data.bin | cut -d' ' -f1"]).success();
    for (id, text) in px_stdout_lines(&out) {
        assert_eq!(text, sum, "engine {id}");
    }
    let dest = env.path().join("back");
    env.pcl([
        "pull",
        "--file",
        "in/data.bin",
        "--dest",
        &dest.to_string_lossy(),
    ])
    .timeout_secs(120)
    .run()
    .success();
    for i in 0..4 {
        let got = std::fs::read(dest.join(format!("in/data.bin.{i}"))).unwrap();
        assert_eq!(sha256_hex(&got), sum, "pulled from engine {i}");
    }
}

#[test]
fn full_disk_fails_that_engine_only_and_leaves_nothing() {
    let env = Env::new();
    let (cluster, dirs) = separate_hosts(&env, 3, &[]);
    let Some(_tmpfs) = Tmpfs::mount(dirs[1].clone(), "1m") else {
        return;
    };
    env.up([&cluster]);
    let data = XorShift(7).bytes(4 << 20);
    let file = env.write("four.bin", &data);
    env.pcl(["push", "--file", &file.to_string_lossy()])
        .run()
        .assert_exit(1)
        .assert_stderr_contains("engine 1 (h1): cannot write four.bin: No space left on device");
    for i in [0, 2] {
        let got = std::fs::read(dirs[i].join("four.bin")).unwrap();
        assert!(got == data, "engine {i} has the whole file");
    }
    assert!(!dirs[1].join("four.bin").exists(), "no half file");
    assert!(
        pcl_temp_files(&dirs[1]).is_empty(),
        "{:?}",
        pcl_temp_files(&dirs[1])
    );

    // Scatter of lines too: the others get their blocks.
    let lines: Vec<u8> = (0..600_000)
        .flat_map(|i| format!("{i:07}\n").into_bytes())
        .collect();
    let input = env.write("lines.txt", &lines);
    env.pcl([
        "scatter",
        "--file",
        "part",
        "--from",
        &input.to_string_lossy(),
    ])
    .run()
    .assert_exit(1)
    .assert_stderr_contains("engine 1 (h1)");
    assert!(dirs[0].join("part").exists() && dirs[2].join("part").exists());
    assert!(!dirs[1].join("part").exists());
    assert!(
        pcl_temp_files(&dirs[1]).is_empty(),
        "{:?}",
        pcl_temp_files(&dirs[1])
    );
    env.px(["echo still fine"]).success();
}

/// The engine host process whose shell runs in `workdir`.
fn engine_host_in(session: &str, workdir: &Path) -> Option<i32> {
    fn descendants(pid: i32) -> Vec<i32> {
        let mut all = Vec::new();
        for child in children_of(pid) {
            all.push(child);
            all.extend(descendants(child));
        }
        all
    }
    engine_pids(session).into_iter().find(|&pid| {
        descendants(pid)
            .into_iter()
            .any(|p| std::fs::read_link(format!("/proc/{p}/cwd")).is_ok_and(|cwd| cwd == workdir))
    })
}

#[test]
fn engine_killed_mid_transfer_fails_that_engine_only() {
    let env = Env::new();
    let (cluster, dirs) = separate_hosts(&env, 3, &["link_timeout = 3", "reconnect_grace = 1"]);
    env.up([&cluster]);
    let victim = engine_host_in(&env.session, &dirs[1]).expect("engine host of h1");
    let data = XorShift(9).bytes(384 << 20);
    let file = env.write("big.bin", &data);
    let sum = sha256_hex(&data);
    drop(data);
    let push = {
        let cmd = env
            .pcl(["push", "--file", &file.to_string_lossy()])
            .timeout_secs(180);
        std::thread::spawn(move || cmd.run())
    };
    // Kill it once bytes are arriving there.
    assert!(
        wait_until(Duration::from_secs(60), || !pcl_temp_files(&dirs[1])
            .is_empty()),
        "the transfer to h1 never started"
    );
    unsafe {
        libc::kill(victim, libc::SIGKILL);
    }
    let out = push.join().unwrap();
    let out = out.assert_exit(255).assert_stderr_contains("engine 1 (h1)");
    for i in [0, 2] {
        let got = std::fs::read(dirs[i].join("big.bin")).unwrap();
        assert_eq!(sha256_hex(&got), sum, "engine {i}\n{}", out.describe());
    }
    assert!(!dirs[1].join("big.bin").exists(), "no half file on h1");
    // The engine host's guard removes the temporary file it was writing.
    assert!(
        wait_until(Duration::from_secs(5), || pcl_temp_files(&dirs[1])
            .is_empty()),
        "temporary file left on h1: {:?}",
        pcl_temp_files(&dirs[1])
    );
}

#[test]
fn push_shows_progress_on_a_terminal_and_nothing_when_piped() {
    let env = Env::new();
    env.up([env.cluster_local(2)]);
    // A source that pauses: the transfer outlasts the bar's one-second delay.
    let script = "{ head -c 1048576 /dev/zero; sleep 2; head -c 1048576 /dev/zero; } \
                  | \"$0\" push --file - blob";
    let push = || env.cmd("sh").args(["-c", script, PCL]);

    let out = push().stderr_on_a_terminal().run().success();
    assert_eq!(out.stdout_str(), "", "{}", out.describe());
    assert!(
        out.stderr.contains("MiB") && out.stderr.contains("iB/s"),
        "no bytes and rate on the terminal\n{}",
        out.describe()
    );
    // 2 MiB in about 2 s: a bar that appears late must not count the bytes
    // before it as one instant's.
    assert!(
        !out.stderr.contains("GiB/s"),
        "an impossible rate\n{}",
        out.describe()
    );
    assert_px_output(
        &env.px(["wc -c < blob"]).success(),
        "[stdout:0] 2097152\n[stdout:1] 2097152\n",
    );

    let out = push().run().success();
    assert_eq!(out.stderr, "", "stderr is not a terminal: nothing extra");
}
