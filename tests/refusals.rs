//! Input that would do something other than what the user meant is refused
//! at once, with what to do instead: an empty target list, a FIFO given as
//! a file, more engines than a host can run, a second `pcl up` racing the
//! first.

mod common;

use common::users::TempUser;
use common::*;
use std::fs;
use std::time::Duration;

#[test]
fn an_empty_target_list_is_a_usage_error_not_all() {
    let env = Env::new();
    env.up([env.cluster_local(2)]);
    let marker = env.path().join("ran");
    let touch = format!("touch {}", marker.display());
    for targets in ["", " ", "all,0", "0,all"] {
        for args in [
            vec!["px", "-t", targets, &touch],
            vec!["map", "-t", targets, &touch, "x"],
            vec!["push", "-t", targets, "a=1"],
            vec!["pull", "-t", targets, "a"],
            vec!["restart", "-t", targets],
            vec!["interrupt", "-t", targets],
        ] {
            let out = env.pcl(&args).run().assert_exit(2);
            let why = if targets.trim().is_empty() {
                "the target list is empty"
            } else {
                "`all` stands alone"
            };
            assert!(out.stderr.contains(why), "{args:?}\n{}", out.describe());
            assert_eq!(out.stdout, b"", "{args:?}");
        }
    }
    assert!(!marker.exists(), "a command ran with an empty target list");
    env.px(["-t", "all", "true"]).success();
}

#[test]
fn a_fifo_is_refused_at_once_with_the_hint_for_pipes() {
    let env = Env::new();
    env.up([env.cluster_local(1)]);
    let fifo = env.path().join("fifo");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(status.success());
    let fifo = fifo.to_str().unwrap();
    for args in [
        vec!["push", "--file", fifo],
        vec!["scatter", "--file", "part", "--from", fifo],
        vec!["scatter", "xs", "--from", fifo],
        vec!["map", "echo {}", "--from", fifo],
    ] {
        let out = env.pcl(&args).timeout_secs(10).run().failure();
        assert!(
            out.stderr.contains("not a regular file") && out.stderr.contains("`-`"),
            "{args:?}\n{}",
            out.describe()
        );
    }
}

#[test]
fn more_engines_than_a_host_may_run_is_refused_with_its_place_in_the_file() {
    let env = Env::new();
    let cluster = env.write(
        "cluster.toml",
        "[[hosts]]\nhost = \"localhost\"\nlauncher = \"local\"\nengines = 100000\n",
    );
    let out = env.pcl(["up"]).arg(&cluster).run().failure();
    assert!(
        out.stderr
            .contains("cluster.toml:4:11: engines must be between 1 and 1024 per host, not 100000"),
        "{}",
        out.describe()
    );
    env.pcl(["up", "-n", "5000"])
        .run()
        .failure()
        .assert_stderr_contains("-n must be between 1 and 1024");
    assert!(daemon_pids(&env.session).is_empty(), "nothing started");
}

#[test]
fn a_host_out_of_processes_says_so() {
    let Some(user) = TempUser::create() else {
        return;
    };
    let env = Env::new();
    // The user's own home and runtime directory, as a login would give.
    let home = env.path().join("user-home");
    fs::create_dir_all(home.join("run")).unwrap();
    for dir in [&home, &home.join("run")] {
        std::os::unix::fs::chown(dir, Some(user.uid), Some(user.gid)).unwrap();
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).unwrap();
    }
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(env.path(), fs::Permissions::from_mode(0o755)).unwrap();
    // Threads count as processes: the daemon and the engine host need a
    // few dozen between them, the 200 shells far more than are left.
    let out = user
        .cmd(&env, "/usr/bin/prlimit")
        .args(["--nproc=60:60", "--", PCL, "up", "-n", "200"])
        .env("HOME", &home)
        .env("XDG_RUNTIME_DIR", home.join("run"))
        .timeout_secs(60)
        .run();
    let down = user
        .cmd(&env, PCL)
        .arg("down")
        .env("HOME", &home)
        .env("XDG_RUNTIME_DIR", home.join("run"))
        .run();
    out.clone().failure();
    assert!(
        out.stderr.contains("out of processes for this user") && out.stderr.contains("ulimit -u"),
        "{}\n{}",
        out.describe(),
        down.describe()
    );
}

#[test]
fn two_ups_of_one_session_at_once_start_it_once() {
    for attempt in 0..3 {
        let env = Env::new();
        // A setup that takes a moment keeps the first `up` starting while
        // the second arrives.
        let cluster = env.write_cluster(&[Host::local(2).raw("setup = \"sleep 1\"")]);
        let cluster = cluster.to_str().unwrap();
        let a = env.spawn(&["up", cluster]);
        let b = env.spawn(&["up", cluster]);
        let results = [
            finish(a, Duration::from_secs(60)),
            finish(b, Duration::from_secs(60)),
        ];
        let winners: Vec<_> = results.iter().filter(|r| r.0 == 0).collect();
        let losers: Vec<_> = results.iter().filter(|r| r.0 != 0).collect();
        assert_eq!(
            (winners.len(), losers.len()),
            (1, 1),
            "attempt {attempt}: {results:?}"
        );
        let (code, stdout, stderr, _) = losers[0];
        assert_eq!(*code, 1, "{stderr}");
        assert!(
            stderr.contains(&format!("session '{}' is already starting", env.session)),
            "attempt {attempt}: {stderr}"
        );
        assert!(stdout.is_empty(), "the loser printed {stdout:?}");
        assert_eq!(String::from_utf8_lossy(&winners[0].1).lines().count(), 2);
        assert_eq!(daemon_pids(&env.session).len(), 1, "one daemon");
        env.down();
    }
}
