//! Self-tests of the shared harness (tests/common): these do not need a
//! working pcl, only the machine's tools (sshd, iproute2).

mod common;

use common::*;
use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

#[test]
fn cmd_captures_exact_bytes_and_status() {
    let out = Cmd::new("sh")
        .args(["-c", r"printf 'a\000b'; printf 'err' >&2; exit 3"])
        .run()
        .assert_exit(3);
    assert_eq!(out.stdout, b"a\0b");
    assert_eq!(out.stderr, "err");
    let out = Cmd::new("cat").stdin("hello").run().success();
    assert_eq!(out.stdout_str(), "hello");
    // Default stdin is /dev/null.
    Cmd::new("cat").run().success().assert_stdout("");
}

#[test]
fn cmd_timeout_kills_the_process_group() {
    let marker = format!("harness-timeout-{}", std::process::id());
    let out = Cmd::new("sh")
        .args(["-c", "sleep 30 & sleep 30; :"])
        .env("PCL_SESSION", &marker)
        .timeout(Duration::from_secs(1))
        .execute()
        .expect("start sh");
    assert!(out.timed_out);
    assert!(out.elapsed < Duration::from_secs(10), "{:?}", out.elapsed);
    // Both sleeps were in the command's process group and are gone.
    assert_nothing_left(&marker);
}

#[test]
#[should_panic(expected = "timed out")]
fn cmd_run_panics_on_timeout() {
    let _ = Cmd::new("sleep")
        .arg("30")
        .timeout(Duration::from_millis(300))
        .run();
}

#[test]
fn cmd_detects_pipes_held_open_by_a_child() {
    let marker = format!("harness-pipe-{}", std::process::id());
    let out = Cmd::new("sh")
        .args(["-c", "setsid sleep 30 & exit 0"])
        .env("PCL_SESSION", &marker)
        .execute()
        .expect("start sh");
    assert!(!out.timed_out);
    assert!(out.pipes_left_open);
    for p in session_processes(&marker) {
        // SAFETY: killing the sleep this test started (found by its marker).
        unsafe {
            libc::kill(p.pid, libc::SIGKILL);
        }
    }
    assert_nothing_left(&marker);
}

#[test]
fn env_isolates_home_runtime_dir_and_session() {
    let a = Env::new();
    let b = Env::named("other");
    assert_ne!(a.session, b.session);
    assert!(
        a.session.starts_with("env-isolates-home-runt"),
        "{}",
        a.session
    );
    let out = a
        .cmd("sh")
        .args([
            "-c",
            "echo \"$HOME|$XDG_RUNTIME_DIR|$PCL_SESSION|${PCL_ENGINE_ID-unset}\"",
        ])
        .env("PCL_ENGINE_ID", "3")
        .run()
        .success();
    assert_eq!(
        out.stdout_str(),
        format!(
            "{}|{}|{}|3\n",
            a.home().display(),
            a.runtime_dir().display(),
            a.session
        )
    );
    assert!(a.home().is_dir() && a.runtime_dir().is_dir());
    let dir = a.path().to_path_buf();
    drop(a);
    assert!(!dir.exists(), "temp dir removed on drop");
}

#[test]
fn session_processes_finds_argv_and_environ() {
    let name = format!("harness-scan-{}", std::process::id());
    let spawn = |args: &[&str], session_env: Option<&str>| {
        // bash's builtin `read` on a pipe we hold open: one process, no
        // children, any argv we like.
        let mut c = Command::new(args[0]);
        c.args(&args[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::null());
        if let Some(s) = session_env {
            c.env("PCL_SESSION", s);
        }
        c.spawn().expect("spawn")
    };
    let long_name = format!("{name}0");
    let mut children = vec![
        // An engine-like process: exact argv.
        spawn(
            &[
                "bash",
                "-c",
                "read -t 60 x",
                "pcl",
                "engine",
                "--session",
                &name,
            ],
            None,
        ),
        // A tether-like process: the session inside one command string.
        spawn(
            &[
                "bash",
                "-c",
                "read -t 60 x",
                "ssh",
                &format!("exec /x/pcl engine --session '{name}'"),
            ],
            None,
        ),
        // A shell child: environment only.
        spawn(&["sleep", "60"], Some(&name)),
        // Decoys: another session whose name extends ours.
        spawn(
            &[
                "bash",
                "-c",
                "read -t 60 x",
                "pcl",
                "engine",
                "--session",
                &long_name,
            ],
            None,
        ),
        spawn(&["sleep", "60"], Some(&long_name)),
    ];
    let ours: Vec<i32> = children[..3].iter().map(|c| c.id() as i32).collect();
    assert!(wait_until(Duration::from_secs(5), || {
        let found: Vec<i32> = session_processes(&name).iter().map(|p| p.pid).collect();
        ours.iter().all(|p| found.contains(p)) && found.len() == 3
    }));
    assert_eq!(engine_pids(&name), vec![ours[0]]);
    assert_eq!(session_processes(&long_name).len(), 2);
    let caught = std::panic::catch_unwind(|| assert_nothing_left(&name));
    assert!(
        caught.is_err(),
        "assert_nothing_left must fail while they run"
    );
    for c in &mut children {
        let _ = c.kill();
        let _ = c.wait();
    }
    assert_nothing_left(&name);
    assert_nothing_left(&long_name);
}

#[test]
fn cluster_toml_is_valid_toml() {
    let text = cluster_toml(&[
        Host::local(2).workdir("~/w"),
        Host::ssh("127.0.0.1", vec!["-F".into(), "/tmp/a b/ssh_config".into()])
            .engines(3)
            .port(2222),
        Host::ssh("h\"q", vec![]).no_engine_path(),
    ]);
    let v: toml::Value = toml::from_str(&text).expect("valid TOML");
    let hosts = v["hosts"].as_array().expect("hosts array");
    assert_eq!(hosts.len(), 3);
    assert_eq!(hosts[0]["launcher"].as_str(), Some("local"));
    assert_eq!(hosts[0]["engines"].as_integer(), Some(2));
    assert_eq!(hosts[1]["port"].as_integer(), Some(2222));
    assert_eq!(
        hosts[1]["ssh_options"].as_array().unwrap()[1].as_str(),
        Some("/tmp/a b/ssh_config")
    );
    assert_eq!(hosts[1]["engine_path"].as_str(), Some(PCL));
    assert_eq!(hosts[2]["host"].as_str(), Some("h\"q"));
    assert!(hosts[2].get("engine_path").is_none());
}

#[test]
fn sshd_accepts_the_test_key() {
    let Some(sshd) = Sshd::start() else { return };
    let out = sshd.ssh("echo ok; echo \"$HOME\"").run().success();
    assert_eq!(
        out.stdout_str(),
        format!("ok\n{}\n", sshd.remote_home().display())
    );
    // Several connections at once.
    let r = &sshd;
    thread::scope(|s| {
        let hs: Vec<_> = (0..4)
            .map(|i| s.spawn(move || r.ssh(&format!("echo {i}")).run().success()))
            .collect();
        for (i, h) in hs.into_iter().enumerate() {
            assert_eq!(h.join().unwrap().stdout_str(), format!("{i}\n"));
        }
    });
    let port = sshd.port();
    drop(sshd);
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}

#[test]
fn closed_port_refuses_ssh() {
    let Some(sshd) = Sshd::start() else { return };
    let out = Cmd::new("ssh")
        .arg("-F")
        .arg(sshd.ssh_config())
        .args(["-p", &closed_port().to_string(), "127.0.0.2", "true"])
        .timeout_secs(30)
        .run()
        .assert_exit(255);
    assert!(
        out.stderr.contains("Connection refused"),
        "{}",
        out.describe()
    );
}

#[test]
fn netns_hosts_are_separate_reachable_and_removed() {
    let Some(hosts) = NetnsHosts::new(2) else {
        return;
    };
    let addrs = hosts.addrs();
    assert_eq!(addrs.len(), 2);
    assert_ne!(addrs[0], addrs[1]);
    for (i, addr) in addrs.iter().enumerate() {
        let out = hosts.exec(i, ["hostname", "-I"]).run().success();
        assert_eq!(out.stdout_str().trim(), addr);
        let out = hosts.ssh(i, "hostname -I; echo \"$HOME\"").run().success();
        assert_eq!(
            out.stdout_str(),
            format!("{addr} \n{}\n", hosts.hosts()[i].home.display())
        );
    }
    // Host 0 can reach host 1 over the bridge.
    hosts
        .exec(
            0,
            ["bash", "-c", &format!("exec 3<>/dev/tcp/{}/22", addrs[1])],
        )
        .run()
        .success();

    let ssh_quick = |i: usize| {
        Cmd::new("ssh")
            .arg("-F")
            .arg(hosts.ssh_config())
            .args(["-o", "ConnectTimeout=3", hosts.addr(i), "true"])
            .timeout_secs(30)
            .run()
    };
    hosts.link_down(0);
    ssh_quick(0).assert_exit(255);
    ssh_quick(1).success();
    hosts.link_up(0);
    assert!(
        wait_until(Duration::from_secs(15), || ssh_quick(0).code == Some(0)),
        "host 0 reachable again after link_up"
    );
    hosts.assert_only_sshd_left();

    let (bridge, netns, veths) = hosts.resource_names();
    assert!(link_exists(&bridge));
    assert!(bridge.len() <= 15 && veths.iter().all(|v| v.len() <= 15));
    drop(hosts);
    let left = netns_list();
    assert!(netns.iter().all(|n| !left.contains(n)), "{left:?}");
    assert!(!link_exists(&bridge));
    assert!(veths.iter().all(|v| !link_exists(v)));
}

#[test]
fn netns_hosts_use_distinct_subnets_and_names() {
    let Some(a) = NetnsHosts::new(1) else { return };
    let Some(b) = NetnsHosts::new(1) else { return };
    assert_ne!(a.gateway(), b.gateway());
    assert_ne!(a.resource_names().0, b.resource_names().0);
    // Each reaches its own host only through its own bridge.
    a.ssh(0, "true").run().success();
    b.ssh(0, "true").run().success();
}

#[test]
fn netns_hosts_are_removed_when_the_test_panics() {
    let (tx, rx) = std::sync::mpsc::channel();
    let r = thread::spawn(move || {
        let Some(hosts) = NetnsHosts::new(1) else {
            tx.send(None).unwrap();
            return;
        };
        tx.send(Some(hosts.resource_names())).unwrap();
        panic!("deliberate panic with namespace hosts alive");
    })
    .join();
    let Some((bridge, netns, veths)) = rx.recv().unwrap() else {
        return;
    };
    assert!(r.is_err());
    let left = netns_list();
    assert!(netns.iter().all(|n| !left.contains(n)), "{left:?}");
    assert!(!link_exists(&bridge));
    assert!(veths.iter().all(|v| !link_exists(v)));
}
