//! The ssh launcher against a real sshd on a loopback port.

mod common;

use common::*;
use std::time::Duration;

#[test]
fn ssh_engines_run_through_sshd_and_keep_state() {
    let Some(sshd) = Sshd::start() else { return };
    let env = Env::new();
    let cluster = env.cluster_sshd(&sshd, 2, true);
    let table = env.up([&cluster]);
    assert_eq!(
        table,
        vec![(0, "127.0.0.1".to_string()), (1, "127.0.0.1".to_string())]
    );

    // The engines really came through ssh: they descend from our sshd.
    let engines = engine_pids(&env.session);
    assert!(
        !engines.is_empty(),
        "no `pcl engine --session {}` process found:\n{}",
        env.session,
        format_procs(&session_processes(&env.session))
    );
    for pid in &engines {
        assert!(
            ancestors(*pid).contains(&sshd.pid()),
            "engine {pid} is not below sshd {}",
            sshd.pid()
        );
    }

    let out = env.px(["echo $PCL_HOST $PCL_ENGINE_ID"]).success();
    assert_px_output(&out, "[stdout:0] 127.0.0.1 0\n[stdout:1] 127.0.0.1 1\n");

    env.px(["cd /tmp; export X=1; y=2; f(){ echo hi; }"])
        .success();
    let out = env.px(["pwd; echo $X $y; f"]).success();
    assert_px_output(
        &out,
        "[stdout:0] /tmp\n[stdout:0] 1 2\n[stdout:0] hi\n\
         [stdout:1] /tmp\n[stdout:1] 1 2\n[stdout:1] hi\n",
    );

    env.down();
    assert_nothing_left(&env.session);
    assert!(
        wait_until(LEFTOVER_GRACE, || sshd.connections().is_empty()),
        "ssh connections still open after `pcl down`: {:?}",
        sshd.connections()
    );
}

#[test]
fn ssh_bootstraps_the_binary_when_engine_path_is_unset() {
    let Some(sshd) = Sshd::start() else { return };
    let env = Env::new();
    let cluster = env.cluster_sshd(&sshd, 2, false);
    let table = env.up([&cluster]);
    assert_eq!(table.len(), 2);
    let out = env.px(["echo $PCL_ENGINE_ID"]).success();
    assert_px_output(&out, "[stdout:0] 0\n[stdout:1] 1\n");

    // The engines run the uploaded copy from the remote ~/.cache/pcl.
    let cache = sshd.remote_home().join(".cache/pcl");
    let engines = engine_pids(&env.session);
    assert!(!engines.is_empty(), "no engine process found");
    for pid in engines {
        let exe = proc_exe(pid).expect("engine exe");
        assert_ne!(exe, std::path::Path::new(PCL));
        assert!(
            exe.starts_with(&cache),
            "engine {pid} runs {}, expected a copy under {} (remote $HOME/.cache/pcl)",
            exe.display(),
            cache.display()
        );
    }

    env.down();
    assert_nothing_left(&env.session);
}

#[test]
fn ssh_unreachable_host_is_reported_and_the_others_stay_usable() {
    let Some(sshd) = Sshd::start() else { return };
    let env = Env::new();
    let bad_port = closed_port();
    let cluster = env.write_cluster(&[
        Host::ssh("127.0.0.2", sshd.ssh_options())
            .port(bad_port)
            .engines(1),
        sshd.host().engines(2),
    ]);
    let out = env.pcl(["up", &cluster.to_string_lossy()]).run().failure();
    let table = parse_engine_table(&out);
    assert_eq!(
        table.len(),
        2,
        "the good host's engines\n{}",
        out.describe()
    );
    assert!(table.iter().all(|(_, h)| h == "127.0.0.1"), "{table:?}");
    assert!(
        out.stderr.contains("127.0.0.2"),
        "stderr must name the failed host\n{}",
        out.describe()
    );
    assert!(
        out.stderr.contains("Connection refused"),
        "stderr must carry ssh's error\n{}",
        out.describe()
    );

    let ids: String = table.iter().map(|(id, _)| format!("{id}\n")).collect();
    env.pcl(["ids"]).run().success().assert_stdout(&ids);

    // The failed host either has no engines at all, or its engines show as
    // dead (never idle); the good ones are idle.
    let out = env.pcl(["status", "--json"]).run().success();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status JSON");
    for e in v["engines"].as_array().expect("engines") {
        let id = e["id"].as_u64().expect("id") as u32;
        if table.iter().any(|(t, _)| *t == id) {
            assert_eq!(e["state"], "idle", "{v}");
        } else {
            assert_eq!(e["host"], "127.0.0.2", "{v}");
            assert_eq!(e["state"], "dead", "{v}");
        }
    }

    // The good engines work. On all engines, the failed host (if it has
    // engines) counts as 255 and is named, and the others' output still
    // prints.
    let want: Vec<(u32, String)> = table.iter().map(|(id, _)| (*id, "ok".into())).collect();
    let good: Vec<String> = table.iter().map(|(id, _)| id.to_string()).collect();
    let out = env.px(["-t", &good.join(","), "echo ok"]).success();
    assert_eq!(px_stdout_lines(&out), want, "{}", out.describe());
    let out = env.px(["echo ok"]);
    assert_eq!(px_stdout_lines(&out), want, "{}", out.describe());
    match out.code {
        Some(0) => {}
        Some(255) => assert!(out.stderr.contains("127.0.0.2"), "{}", out.describe()),
        _ => out.fail("expected exit 0, or 255 for the failed host's engines"),
    }

    env.down();
    assert_nothing_left(&env.session);
}

#[test]
fn ssh_login_noise_before_the_handshake_is_skipped() {
    let Some(sshd) = Sshd::start() else { return };
    // Debian's bash reads ~/.bashrc for ssh commands: make it chatty.
    std::fs::write(
        sshd.remote_home().join(".bashrc"),
        "echo 'Welcome to the test host!'\necho 'PCL-ENGINE is not here yet'\necho 'stderr noise' >&2\n",
    )
    .unwrap();
    let probe = sshd.ssh("true").run().success();
    assert!(
        probe.stdout_str().contains("Welcome"),
        "precondition: the login prints noise\n{}",
        probe.describe()
    );

    let env = Env::new();
    let cluster = env.cluster_sshd(&sshd, 1, true);
    env.pcl(["up", &cluster.to_string_lossy()])
        .timeout(Duration::from_secs(60))
        .run()
        .success();
    let out = env.px(["echo ok"]).success();
    assert_px_output(&out, "[stdout:0] ok\n");
    env.down();
    assert_nothing_left(&env.session);
}
