//! What a new user does first, as the README and the shipped files show
//! it: a session named in the cluster file found without naming it again,
//! the example cluster file, the man pages' promises on closed pipes and
//! exit statuses, map's quoting and input rules, async job numbers, and
//! nothing left of a session after `pcl down`.

mod common;

use common::*;
use std::path::PathBuf;

/// A pcl call as a user types it: no `--session`, no `PCL_SESSION`.
fn unnamed<I, S>(env: &Env, args: I) -> Cmd
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    env.pcl(args).env_remove("PCL_SESSION")
}

fn session_dir(env: &Env, name: &str) -> PathBuf {
    env.runtime_dir().join("pcl").join(name)
}

/// The README's first screen, with two local hosts standing in for
/// node01 and node02, and the session named only in the cluster file.
#[test]
fn the_readme_first_screen_works_for_a_session_named_in_the_cluster_file() {
    let env = Env::new();
    let name = env.other_session("lab");
    env.write(
        "cluster.toml",
        format!(
            "name = \"{name}\"\n\
             [[hosts]]\nhost = \"node[01-02]\"\nlauncher = \"local\"\nengines = 2\n"
        ),
    );
    let scratch = env.path().join("scratch/run7");
    std::fs::create_dir_all(&scratch).unwrap();

    let out = unnamed(&env, ["up", "cluster.toml"]).run().success();
    assert_eq!(
        out.stdout_str(),
        "0 node01\n1 node01\n2 node02\n3 node02\n",
        "{}",
        out.describe()
    );
    assert_eq!(
        out.stderr,
        format!("pcl: session '{name}' (the cluster file's name)\n"),
        "{}",
        out.describe()
    );
    let cd = format!("cd {}; n=$(nproc)", scratch.display());
    unnamed(&env, ["px", &cd]).run().success().assert_stdout("");
    let out = unnamed(&env, ["px", "echo $PWD has $n cores"])
        .run()
        .success();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let want: String = (0..4)
        .map(|id| format!("[stdout:{id}] {} has {cores} cores\n", scratch.display()))
        .collect();
    assert_eq!(out.stdout_str(), want, "{}", out.describe());
    let out = unnamed(&env, ["px", "-t", "node02", "-b", "uname -r"])
        .run()
        .success();
    let release = String::from_utf8(
        std::process::Command::new("uname")
            .arg("-r")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    // Exactly as the README prints it: dshbak's divider, ids and hosts.
    let divider = "-".repeat(16);
    assert_eq!(
        out.stdout_str(),
        format!("{divider}\n[2-3] node02\n{divider}\n{release}"),
        "{}",
        out.describe()
    );
    unnamed(&env, ["down"]).run().success();
    assert_nothing_left(&name);
}

#[test]
fn several_running_sessions_are_listed_with_how_to_pick_one() {
    let env = Env::new();
    let (a, b) = (env.other_session("a"), env.other_session("b"));
    let cluster = env.cluster_local(1);
    for name in [&a, &b] {
        env.pcl(["up", &cluster.to_string_lossy(), "--session", name])
            .run()
            .success();
    }
    let out = unnamed(&env, ["ids"]).run().failure();
    for needle in [a.as_str(), b.as_str(), "--session NAME", "PCL_SESSION=NAME"] {
        assert!(out.stderr.contains(needle), "{needle}\n{}", out.describe());
    }
    // One left running: that is the one meant.
    env.pcl(["down", "--session", &a]).run().success();
    unnamed(&env, ["ids"]).run().success().assert_stdout("0\n");
    unnamed(&env, ["down"]).run().success();
    assert_nothing_left(&b);
    // None left: the error names `default`, which `pcl up` would start.
    let out = unnamed(&env, ["ids"]).run().failure();
    assert!(
        out.stderr.contains("no session 'default'"),
        "{}",
        out.describe()
    );
}

/// The shipped example, its hosts made local (the test does not assume
/// which are active), starts as it is.
#[test]
fn the_shipped_example_cluster_file_starts() {
    let env = Env::new();
    let name = env.other_session("example");
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/cluster.example.toml"))
            .expect("the shipped example");
    let mut file: toml::Table = text.parse().expect("the example is TOML");
    file.insert("name".into(), name.clone().into());
    let hosts = file
        .get_mut("hosts")
        .and_then(|h| h.as_array_mut())
        .expect("the example has [[hosts]]");
    let mut engines = 0;
    for host in hosts.iter_mut() {
        let host = host.as_table_mut().expect("a table");
        for ssh_only in ["user", "port", "identity", "ssh_options", "engine_path"] {
            host.remove(ssh_only);
        }
        host.insert("launcher".into(), "local".into());
        engines += host
            .get("engines")
            .and_then(|n| n.as_integer())
            .unwrap_or(1);
    }
    env.write("example.toml", toml::to_string(&file).unwrap());

    let out = unnamed(&env, ["up", "example.toml"]).run().success();
    assert_eq!(
        parse_engine_table(&out).len() as i64,
        engines,
        "{}",
        out.describe()
    );
    unnamed(&env, ["px", "true"]).run().success();
    unnamed(&env, ["down"]).run().success();
    assert_nothing_left(&name);
}

#[test]
fn a_failing_setup_names_its_own_line_and_the_log_stays() {
    let env = Env::new();
    let cluster = env.write(
        "cluster.toml",
        "[defaults]\nsetup = \"\"\"\ntrue\nsource ~/no-venv/bin/activate\n\"\"\"\n\
         [[hosts]]\nhost = \"localhost\"\nlauncher = \"local\"\n",
    );
    let out = env.pcl(["up", &cluster.to_string_lossy()]).run().failure();
    assert!(
        out.stderr
            .contains("setup line 2 (source ~/no-venv/bin/activate): "),
        "{}",
        out.describe()
    );
    let log = session_dir(&env, &env.session).join("log");
    assert!(
        out.stderr
            .contains(&format!("its log is {}", log.display())),
        "{}",
        out.describe()
    );
    assert!(log.is_file(), "{}", out.describe());
    assert_nothing_left(&env.session);
}

#[test]
fn a_clean_down_leaves_no_session_directory() {
    let env = Env::new();
    env.up([env.cluster_local(1)]);
    env.px(["true"]).success();
    assert!(session_dir(&env, &env.session).join("log").is_file());
    env.down();
    assert!(
        !session_dir(&env, &env.session).exists(),
        "{:?} is still there",
        session_dir(&env, &env.session)
    );
}

#[test]
fn async_job_ids_count_from_one() {
    let env = Env::new();
    env.up([env.cluster_local(2)]);
    for _ in 0..3 {
        env.px(["true"]).success();
    }
    env.pcl(["map", "echo", "a", "b"]).run().success();
    env.pcl(["px", "--async", "echo x"])
        .run()
        .success()
        .assert_stdout("1\n");
    env.pcl(["map", "--async", "echo", "a"])
        .run()
        .success()
        .assert_stdout("2\n");
    env.pcl(["result", "1"])
        .run()
        .success()
        .assert_stdout("[stdout:0] x\n[stdout:1] x\n");
}

/// `pcl ... | head -1` ends quietly with 141, as `cat` does.
#[test]
fn a_closed_stdout_ends_quietly() {
    let env = Env::new();
    env.up([env.cluster_local(2)]);
    env.px(["x=($(seq 200000))"]).success();
    let items = env.write(
        "items",
        (0..500).map(|i| format!("{i}\n")).collect::<String>(),
    );
    for call in [
        format!("{PCL} gather x"),
        format!("{PCL} px 'seq 200000'"),
        format!("{PCL} map --from {} 'seq {{}} 1000'", items.display()),
    ] {
        let script = format!("{call} | head -1; echo \"status ${{PIPESTATUS[0]}}\"");
        let out = env.cmd("bash").args(["-c", &script]).run().success();
        let lines = out.stdout_lines();
        assert_eq!(lines.len(), 2, "{call}\n{}", out.describe());
        assert_eq!(lines[1], "status 141", "{call}\n{}", out.describe());
        assert_eq!(out.stderr, "", "{call}\n{}", out.describe());
    }
    env.down();
}

#[test]
fn a_nul_byte_in_map_input_is_refused_with_its_line() {
    let env = Env::new();
    env.up([env.cluster_local(2)]);
    let file = env.write("items", b"a\nb\nc\0d\ne\n");
    let out = env
        .pcl(["map", "--from", &file.to_string_lossy(), "echo {}"])
        .run()
        .assert_exit(2);
    assert!(out.stderr.contains("line 3 of"), "{}", out.describe());
    assert_eq!(out.stdout_str(), "", "nothing ran\n{}", out.describe());
    let out = env
        .pcl(["map", "echo {}", "-"])
        .stdin(&b"x\0y\n"[..])
        .run()
        .assert_exit(2);
    assert!(out.stderr.contains("line 1 of stdin"), "{}", out.describe());
    assert_eq!(out.stdout_str(), "", "{}", out.describe());
    let out = env
        .pcl(["map", "--async", "echo {}", "-"])
        .stdin(&b"ok\nx\0y\n"[..])
        .run()
        .assert_exit(2);
    assert!(out.stderr.contains("line 2 of stdin"), "{}", out.describe());
    assert_eq!(out.stdout_str(), "", "no job started\n{}", out.describe());
}

/// GNU parallel's habit of quoting `{}` yields the item's exact bytes,
/// and runs nothing of it.
#[test]
fn a_quoted_placeholder_stands_for_the_exact_item() {
    let env = Env::new();
    env.up([env.cluster_local(2)]);
    let workdir = env.px(["-t", "0", "--raw", "pwd"]).success().stdout_str();
    let workdir = PathBuf::from(workdir.trim());
    let out = env
        .pcl([
            "map",
            "printf '<%s>\\n' \"{}\" '{}' \"a{}b\"",
            "$(touch x)",
            "it's \"q\"",
            "plain",
        ])
        .run()
        .success();
    assert_eq!(
        out.stdout_str(),
        "<$(touch x)>\n<$(touch x)>\n<a$(touch x)b>\n\
         <it's \"q\">\n<it's \"q\">\n<ait's \"q\"b>\n\
         <plain>\n<plain>\n<aplainb>\n",
        "{}",
        out.describe()
    );
    let out = env
        .pcl(["map", "echo $(( {} ))", "a[$(touch y)]"])
        .run()
        .failure();
    assert!(
        !workdir.join("x").exists() && !workdir.join("y").exists(),
        "{}",
        out.describe()
    );
}
