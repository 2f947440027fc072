//! Several hosts: one network namespace (with its own sshd) per host.
//! Needs root and iproute2; skipped otherwise.

mod common;

use common::*;
use std::collections::BTreeSet;
use std::time::Duration;

#[test]
fn netns_four_hosts_each_engine_runs_on_its_own_host() {
    let Some(hosts) = NetnsHosts::new(4) else {
        return;
    };
    let env = Env::new();
    let cluster = env.cluster_netns(&hosts, 1);
    let table = env.up([&cluster]);
    let addrs: BTreeSet<String> = hosts.addrs().into_iter().collect();
    assert_eq!(
        table.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        vec![0, 1, 2, 3]
    );
    assert_eq!(
        table
            .iter()
            .map(|(_, h)| h.clone())
            .collect::<BTreeSet<_>>(),
        addrs,
        "one engine per namespace host"
    );

    let out = env.px(["hostname -I"]).success();
    let got = px_stdout_lines(&out);
    assert_eq!(got.len(), 4, "{}", out.describe());
    for ((id, text), (tid, host)) in got.iter().zip(&table) {
        assert_eq!(id, tid);
        assert_eq!(
            text.trim(),
            host,
            "engine {id} runs on its host\n{}",
            out.describe()
        );
    }
    let seen: BTreeSet<String> = got.iter().map(|(_, t)| t.trim().to_string()).collect();
    assert_eq!(seen, addrs, "4 different addresses, the namespace IPs");

    let out = env.px(["echo $PCL_HOST"]).success();
    let got = px_stdout_lines(&out);
    assert_eq!(got, table, "PCL_HOST is the engine's host");

    // Each engine host process lives in a different one of our namespaces.
    let ours: BTreeSet<String> = hosts.hosts().iter().map(|h| h.netns.clone()).collect();
    let engine_ns: BTreeSet<String> = engine_pids(&env.session)
        .into_iter()
        .map(netns_of)
        .collect();
    assert_eq!(engine_ns, ours, "engine host processes per namespace");

    env.down_leaving_nothing(&hosts);
}

#[test]
fn netns_targets_select_engines_by_host() {
    let Some(hosts) = NetnsHosts::new(3) else {
        return;
    };
    let env = Env::new();
    let cluster = env.cluster_netns(&hosts, 2);
    let table = env.up([&cluster]);
    assert_eq!(table.len(), 6);
    let host1 = hosts.addr(1).to_string();
    let on_host1 = engines_on(&table, &host1);
    assert_eq!(on_host1.len(), 2, "{table:?}");

    let out = env.px(["-t", &host1, "hostname -I"]).success();
    let got = px_stdout_lines(&out);
    assert_eq!(
        got.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        on_host1,
        "{}",
        out.describe()
    );
    assert!(
        got.iter().all(|(_, t)| t.trim() == host1),
        "{}",
        out.describe()
    );

    // Engines on one host share it but not their shells.
    env.px(["v=$PCL_ENGINE_ID"]).success();
    let out = env.px(["echo $v"]).success();
    let got = px_stdout_lines(&out);
    assert!(
        got.iter().all(|(id, v)| *v == id.to_string()),
        "{}",
        out.describe()
    );

    env.down_leaving_nothing(&hosts);
}

#[test]
fn netns_killed_engine_host_is_dead_counts_as_255_and_the_others_still_print() {
    let Some(hosts) = NetnsHosts::new(2) else {
        return;
    };
    let env = Env::new();
    let cluster = env.cluster_netns(&hosts, 1);
    let table = env.up([&cluster]);
    assert_eq!(table.len(), 2);
    let victim_host = hosts.addr(1).to_string();
    let victim_id = engines_on(&table, &victim_host)[0];
    let good_id = engines_off(&table, &victim_host)[0];

    let victim_ns = &hosts.hosts()[1].netns;
    let victims: Vec<i32> = engine_pids(&env.session)
        .into_iter()
        .filter(|&pid| netns_of(pid) == *victim_ns)
        .collect();
    assert_eq!(victims.len(), 1, "one engine host process in {victim_ns}");
    // SAFETY: killing the engine host process this test's session started.
    unsafe {
        libc::kill(victims[0], libc::SIGKILL);
    }

    // The engine host's ssh tether ends with it, so the daemon can know at
    // once: status shows it dead (checked with a generous bound, as a hang
    // check, not a speed test), and px reports it as 255 on stderr while
    // the good engine's output still prints.
    let status = || -> serde_json::Value {
        serde_json::from_slice(&env.pcl(["status", "--json"]).run().success().stdout)
            .expect("status JSON")
    };
    let state = |v: &serde_json::Value, id: u32| {
        v["engines"]
            .as_array()
            .expect("engines")
            .iter()
            .find(|e| e["id"] == id)
            .map(|e| e["state"].clone())
    };
    let noticed = wait_until(Duration::from_secs(10), || {
        state(&status(), victim_id) == Some("dead".into())
    });
    let v = status();
    assert!(
        noticed,
        "engine {victim_id} still not dead 10 s after its host process was killed: {v}\n\
         session processes:\n{}",
        format_procs(&session_processes(&env.session))
    );
    assert_eq!(state(&v, good_id), Some("idle".into()), "{v}");

    let out = env.px(["echo ok"]).assert_exit(255);
    assert_eq!(
        px_stdout_lines(&out),
        vec![(good_id, "ok".to_string())],
        "{}",
        out.describe()
    );
    assert!(
        out.stderr.contains(&victim_host) || out.stderr.contains(&format!("engine {victim_id}")),
        "stderr names the dead engine\n{}",
        out.describe()
    );
    // The good engine alone still succeeds.
    env.px(["-t", &good_id.to_string(), "true"]).success();

    env.down_leaving_nothing(&hosts);
}
