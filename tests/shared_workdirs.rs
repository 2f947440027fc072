//! Hosts whose workdirs are one directory (a shared home): pcl finds out
//! at `up` and after `restart`, sends one copy per file system, refuses a
//! scatter or gather whose REMOTE is one file for two engines, and names
//! files per engine with `{id}` and `{host}`. Namespace hosts share the
//! machine's file system, exactly like nodes sharing an NFS home; a
//! workdir per host stands for node-local disks.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Each engine's `workdir_group` in `pcl status --json`, in id order.
fn groups(env: &Env) -> Vec<String> {
    let v = env.status_json();
    v["engines"]
        .as_array()
        .expect("engines")
        .iter()
        .map(|e| {
            e["workdir_group"]
                .as_str()
                .unwrap_or_else(|| panic!("no workdir_group: {v}"))
                .to_string()
        })
        .collect()
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| out.fail(&format!("not JSON: {e}")))
}

/// `results[*][field]` of a data verb's `--json`, in id order.
fn field(doc: &serde_json::Value, field: &str) -> Vec<serde_json::Value> {
    doc["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| r[field].clone())
        .collect()
}

/// Lines that sort as they are, so `sort` keeps each block as it was.
fn sorted_lines(n: usize) -> Vec<u8> {
    (0..n)
        .flat_map(|i| format!("{i:07}\n").into_bytes())
        .collect()
}

/// Bytes written so far by process `pid` (`wchar` of `/proc/PID/io`).
fn written(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/io"))
        .expect("/proc/PID/io")
        .lines()
        .find_map(|l| l.strip_prefix("wchar: "))
        .and_then(|v| v.trim().parse().ok())
        .expect("a wchar line")
}

/// The engine host process whose shells say `PCL_HOST=host`.
fn engine_host_of(session: &str, host: &str) -> i32 {
    let want = format!("PCL_HOST={host}");
    let found = engine_pids(session).into_iter().find(|&pid| {
        children_of(pid).into_iter().any(|child| {
            std::fs::read(format!("/proc/{child}/environ"))
                .is_ok_and(|env| env.split(|&b| b == 0).any(|e| e == want.as_bytes()))
        })
    });
    found.unwrap_or_else(|| panic!("no engine host for {host}"))
}

/// No probe marker (nor any other pcl temporary file) is left in `dirs`.
fn assert_no_markers(dirs: &[&Path]) {
    for dir in dirs {
        assert!(pcl_temp_files(dir).is_empty(), "{:?}", pcl_temp_files(dir));
    }
}

/// Local hosts `a` (two engines) and `b` share one workdir, `c` has its
/// own: found at `up` and again after a restart; refusals, `{{`, one copy
/// per file system, and a shared file pulled once.
#[test]
fn hosts_sharing_a_workdir_are_found_and_their_files_kept_apart() {
    let env = Env::new();
    let shared = env.path().join("shared");
    let own = env.path().join("own");
    let host = |name: &str, engines: usize, dir: &Path| {
        let mut h = Host::local(engines).workdir(&dir.to_string_lossy());
        h.host = name.into();
        h
    };
    let cluster = env.write_cluster(&[
        host("a", 2, &shared),
        host("b", 1, &shared),
        host("c", 1, &own),
    ]);
    env.up([&cluster]);
    assert_eq!(groups(&env), ["0-2", "0-2", "0-2", "3"]);
    assert_no_markers(&[&shared, &own]);
    let text = env.pcl(["status"]).run().success().stdout_str();
    assert!(text.lines().next().unwrap().contains("SHARES"), "{text}");
    assert!(text.lines().nth(3).unwrap().contains(" 0-2 "), "{text}");

    // One file for three engines: refused before any byte moves.
    let input = env.write("lines.txt", sorted_lines(1000));
    let input = input.to_string_lossy();
    let dir = shared.display();
    env.pcl(["scatter", "--file", "corpus.txt", "--from", &input])
        .run()
        .assert_exit(1)
        .assert_stderr_contains(&format!(
            "engines 0-2 share the workdir {dir} (hosts a,b share a file system): their \
             blocks would overwrite one another in corpus.txt; give each its own file, e.g. \
             --file 'corpus.txt.{{id}}'"
        ));
    assert!(!shared.join("corpus.txt").exists());
    // Two engines of one host are named as such.
    env.pcl(["scatter", "-t", "0-1", "--file", "c.txt", "--from", &input])
        .run()
        .assert_exit(1)
        .assert_stderr_contains(&format!(
            "engines 0-1 share the workdir {dir} (all on host a): their blocks would"
        ));
    // Engines of different file systems may share a name.
    env.pcl([
        "scatter",
        "-t",
        "0,3",
        "--file",
        "corpus.txt",
        "--from",
        &input,
    ])
    .run()
    .success();
    env.pcl(["gather", "--file", "corpus.txt"])
        .run()
        .assert_exit(1)
        .assert_stdout("")
        .assert_stderr_contains(&format!(
            "engines 0-2 share the workdir {dir} (hosts a,b share a file system): corpus.txt \
             is one file for all 3 of them, so gather would print it 3 times"
        ));

    // `{{` and `}}` are braces; one copy per file system, and each engine
    // says who wrote its copy.
    let out = env
        .pcl(["push", "--json", "--file", &input, "in/lit{{id}}.txt"])
        .run()
        .success();
    assert_eq!(field(&json(&out), "written_by"), [0, 0, 0, 3]);
    for dir in [&shared, &own] {
        assert_eq!(
            std::fs::read(dir.join("in/lit{id}.txt")).unwrap(),
            sorted_lines(1000)
        );
    }
    // LOCAL's own name is taken as it is, braces and all.
    let braced = env.write("x{id}.txt", "braced\n");
    env.pcl(["push", "-t", "3", "--file", &braced.to_string_lossy()])
        .run()
        .success();
    assert_eq!(
        std::fs::read_to_string(own.join("x{id}.txt")).unwrap(),
        "braced\n"
    );

    // A shared file is pulled once per file system, and pcl says so.
    let dest = env.path().join("got");
    let out = env
        .pcl([
            "pull",
            "--json",
            "--file",
            "in/lit{{id}}.txt",
            "--dest",
            &dest.to_string_lossy(),
        ])
        .run()
        .success();
    let copy0 = dest.join("in/lit{id}.txt.0");
    let copy3 = dest.join("in/lit{id}.txt.3");
    assert!(
        out.stderr.contains(&format!(
            "engines 0-2 share the workdir {dir} (hosts a,b share a file system): in/lit{{id}}.txt \
         is one file there, fetched once, as {}",
            copy0.display()
        )),
        "{}",
        out.describe()
    );
    let doc = json(&out);
    let (p0, p3) = (copy0.display().to_string(), copy3.display().to_string());
    assert_eq!(
        field(&doc, "path"),
        [&p0, &p0, &p0, &p3].map(|p| serde_json::json!(p))
    );
    assert_eq!(field(&doc, "fetched_from"), [0, 0, 0, 3]);
    let mut got: Vec<String> = std::fs::read_dir(dest.join("in"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    got.sort();
    assert_eq!(got, ["lit{id}.txt.0", "lit{id}.txt.3"]);

    // A bad template is a usage error, for every verb.
    for bad in ["p{nope}", "p{", "p}", "/abs.{id}", "{host}/../x"] {
        for args in [
            vec!["push", "--file", &input, bad],
            vec!["pull", "--file", bad],
            vec!["scatter", "--file", bad, "--from", &input],
            vec!["gather", "--file", bad],
        ] {
            env.pcl(&args).run().assert_exit(2);
        }
    }

    // With host a dead, host b writes the shared copy; a restarted host
    // is probed again, with the others.
    let victim = engine_host_of(&env.session, "a");
    // SAFETY: killing an engine host this test's session started.
    unsafe { libc::kill(victim, libc::SIGKILL) };
    assert!(wait_until(Duration::from_secs(10), || {
        env.status_json()["engines"][0]["state"] == "dead"
    }));
    let out = env
        .pcl(["push", "--json", "--file", &input, "while-a-is-down.txt"])
        .run()
        .assert_exit(255);
    let doc = json(&out);
    assert_eq!(field(&doc, "status"), [255, 255, 0, 0]);
    assert_eq!(field(&doc, "written_by"), [0, 1, 2, 3]);
    assert_eq!(
        std::fs::read(shared.join("while-a-is-down.txt")).unwrap(),
        sorted_lines(1000)
    );
    env.pcl(["restart"]).run().success();
    assert_eq!(groups(&env), ["0-2", "0-2", "0-2", "3"]);
    assert_no_markers(&[&shared, &own]);
    let out = env
        .pcl(["push", "--json", "--file", &input, "again.txt"])
        .run()
        .success();
    assert_eq!(field(&json(&out), "written_by"), [0, 0, 0, 3]);
}

/// The case: 8 engines on 4 hosts that share one workdir.
/// `corpus.txt` is refused; `part.{id}` and `out.{id}` give the input
/// back byte for byte; `{host}` names one file per host.
#[test]
fn netns_eight_engines_on_four_hosts_sharing_a_home_round_trip_with_id() {
    let Some(hosts) = NetnsHosts::new(4) else {
        return;
    };
    let env = Env::new();
    let home = env.path().join("home-on-nfs");
    let hs: Vec<Host> = (0..4)
        .map(|i| hosts.host(i).engines(2).workdir(&home.to_string_lossy()))
        .collect();
    let table = env.up([&env.write_cluster(&hs)]);
    assert_eq!(table.len(), 8);
    assert_eq!(groups(&env), vec!["0-7"; 8]);
    assert_no_markers(&[&home]);

    let lines = sorted_lines(100_000);
    let input = env.write("lines.txt", &lines);
    let input = input.to_string_lossy();
    let out = env
        .pcl(["scatter", "--file", "corpus.txt", "--from", &input])
        .run()
        .assert_exit(1);
    for needle in [
        format!("engines 0-7 share the workdir {} (hosts ", home.display()),
        " share a file system): their blocks would overwrite one another in corpus.txt; give \
         each its own file, e.g. --file 'corpus.txt.{id}'"
            .to_string(),
    ] {
        assert!(out.stderr.contains(&needle), "{needle}\n{}", out.describe());
    }
    assert!(!home.join("corpus.txt").exists());

    env.pcl(["scatter", "--file", "part.{id}", "--from", &input])
        .run()
        .success();
    env.px(["sort part.$PCL_ENGINE_ID > out.$PCL_ENGINE_ID"])
        .success();
    let out = env.pcl(["gather", "--file", "out.{id}"]).run().success();
    assert!(
        out.stdout == lines,
        "gather --file 'out.{{id}}' differs from the input"
    );
    for id in 0..8 {
        assert!(home.join(format!("part.{id}")).exists(), "part.{id}");
    }

    // `{host}`: one file per host, so one engine per host may scatter.
    let first_per_host = "0,2,4,6";
    env.pcl([
        "scatter",
        "-t",
        first_per_host,
        "--file",
        "p.{host}",
        "--from",
        &input,
    ])
    .run()
    .success();
    let mut joined = Vec::new();
    for i in 0..4 {
        joined.extend(std::fs::read(home.join(format!("p.{}", hosts.addr(i)))).unwrap());
    }
    assert!(joined == lines, "the p.HOST files differ from the input");
    let out = env
        .pcl(["gather", "-t", first_per_host, "--file", "p.{host}"])
        .run()
        .success();
    assert!(
        out.stdout == lines,
        "gather --file 'p.{{host}}' differs from the input"
    );
    // Both engines of a host would write one p.HOST.
    env.pcl(["scatter", "--file", "p.{host}", "--from", &input])
        .run()
        .assert_exit(1)
        .assert_stderr_contains(&format!(
            "engines 0-1 share the workdir {} (all on host {}): their blocks would overwrite \
             one another in p.{}",
            home.display(),
            hosts.addr(0),
            hosts.addr(0)
        ));
    env.down_leaving_nothing(&hosts);
}

/// Two pairs of hosts, each pair sharing a directory: a push writes two
/// copies, not four, and every engine's shell sees the right bytes.
#[test]
fn netns_push_to_two_pairs_of_hosts_writes_one_copy_per_pair() {
    let Some(hosts) = NetnsHosts::new(4) else {
        return;
    };
    let env = Env::new();
    let pair: Vec<PathBuf> = ["pair-a", "pair-b"]
        .iter()
        .map(|d| env.path().join(d))
        .collect();
    let hs: Vec<Host> = (0..4)
        .map(|i| {
            hosts
                .host(i)
                .engines(2)
                .workdir(&pair[i / 2].to_string_lossy())
        })
        .collect();
    env.up([&env.write_cluster(&hs)]);
    assert_eq!(
        groups(&env),
        ["0-3", "0-3", "0-3", "0-3", "4-7", "4-7", "4-7", "4-7"]
    );
    assert_no_markers(&[&pair[0], &pair[1]]);

    let engine_hosts: Vec<i32> = (0..4)
        .map(|i| {
            let inside = hosts.pids_in(i);
            let found = engine_pids(&env.session)
                .into_iter()
                .find(|p| inside.contains(p));
            found.unwrap_or_else(|| panic!("no engine host on host {i}"))
        })
        .collect();
    let before: Vec<u64> = engine_hosts.iter().map(|&p| written(p)).collect();
    let size = 16usize << 20;
    let data = XorShift(0x2545_f491_4f6c_dd1d).bytes(size);
    let file = env.write("data.bin", &data);
    let out = env
        .pcl([
            "push",
            "--json",
            "--file",
            &file.to_string_lossy(),
            "in/data.bin",
        ])
        .timeout_secs(120)
        .run()
        .success();
    assert_eq!(field(&json(&out), "written_by"), [0, 0, 0, 0, 4, 4, 4, 4]);
    // Only the first host of each pair wrote the bytes.
    let wrote: Vec<u64> = engine_hosts
        .iter()
        .zip(&before)
        .map(|(&p, b)| written(p) - b)
        .collect();
    for (i, &n) in wrote.iter().enumerate() {
        let writer = i % 2 == 0;
        assert!(
            if writer {
                n >= size as u64
            } else {
                n < size as u64 / 4
            },
            "host {i} wrote {n} bytes (all: {wrote:?})"
        );
    }
    let sum = sha256_hex(&data);
    let out = env.px(["sha256sum in/data.bin | cut -d' ' -f1"]).success();
    let got = px_stdout_lines(&out);
    assert_eq!(got.len(), 8, "{}", out.describe());
    for (id, text) in got {
        assert_eq!(text, sum, "engine {id}");
    }
    env.down_leaving_nothing(&hosts);
}
