//! SSH as it is in the wild: sshd's default MaxStartups turning a burst of
//! connections away, host keys nobody accepted yet, and servers that only
//! take passwords. `pcl up` must neither fail for load nor hang on a
//! question, and its errors must say what to do.

mod common;

use common::*;
use std::collections::BTreeSet;
use std::time::Duration;

#[test]
fn ssh_64_hosts_through_one_sshd_with_default_maxstartups_all_come_up() {
    let Some(sshd) = Sshd::start_with("MaxStartups 10:30:100\n") else {
        return;
    };
    let env = Env::new();
    // 64 host names, all the same sshd: 64 connections at once, where sshd
    // starts dropping unauthenticated ones beyond 10.
    let config = env.write(
        "ssh_config",
        format!(
            "Host h*\n  HostName 127.0.0.1\n{}",
            std::fs::read_to_string(sshd.ssh_config()).unwrap()
        ),
    );
    let opts = vec!["-F".to_string(), config.to_string_lossy().into_owned()];
    let cluster = env.write_cluster(&[Host::ssh("h[01-64]", opts).engines(1)]);
    let out = env
        .pcl(["up", &cluster.to_string_lossy()])
        .timeout_secs(240)
        .run()
        .success();
    let table = parse_engine_table(&out);
    assert_eq!(table.len(), 64, "{}", out.describe());
    let hosts: BTreeSet<String> = table.iter().map(|(_, h)| h.clone()).collect();
    assert_eq!(hosts.len(), 64);
    eprintln!(
        "sshd dropped {} connection(s) for MaxStartups; pcl retried {}",
        sshd.log().matches("drop connection").count(),
        env.logs().matches("retrying").count()
    );

    let out = env.px(["echo $PCL_HOST"]).success();
    assert_eq!(px_stdout_lines(&out), table, "{}", out.describe());
    env.down();
    assert_nothing_left(&env.session);
}

#[test]
fn ssh_unknown_host_key_fails_at_once_and_says_what_to_do() {
    let Some(sshd) = Sshd::start() else {
        return;
    };
    let env = Env::new();
    let known_hosts = env.write("known_hosts", "");
    let mut opts = sshd.ssh_options();
    opts.extend([
        "-o".into(),
        "StrictHostKeyChecking=yes".into(),
        "-o".into(),
        format!("UserKnownHostsFile={}", known_hosts.display()),
    ]);
    let cluster = env.write_cluster(&[Host::ssh("127.0.0.1", opts)]);
    let out = env
        .pcl(["up", &cluster.to_string_lossy()])
        .timeout_secs(30)
        .run()
        .failure();
    assert!(
        out.stderr.contains("Host key verification failed"),
        "ssh's own words\n{}",
        out.describe()
    );
    assert!(
        out.stderr.contains("`ssh 127.0.0.1`") && out.stderr.contains("StrictHostKeyChecking"),
        "what to do\n{}",
        out.describe()
    );
    assert_nothing_left(&env.session);
}

#[test]
fn ssh_password_only_server_fails_at_once_and_says_what_to_do() {
    let Some(sshd) = Sshd::start_with(
        "PubkeyAuthentication no\nPasswordAuthentication yes\nKbdInteractiveAuthentication yes\n",
    ) else {
        return;
    };
    let env = Env::new();
    let cluster = env.write_cluster(&[sshd.host()]);
    let out = env
        .pcl(["up", &cluster.to_string_lossy()])
        .timeout_secs(30)
        .run()
        .failure();
    assert!(out.elapsed < Duration::from_secs(20), "{}", out.describe());
    assert!(
        out.stderr.contains("Permission denied"),
        "ssh's own words\n{}",
        out.describe()
    );
    assert!(
        out.stderr.contains("never prompts") && out.stderr.contains("key"),
        "what to do\n{}",
        out.describe()
    );
    assert_nothing_left(&env.session);
}
