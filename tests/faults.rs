//! Real faults on namespace hosts: a SIGKILLed engine host, a link taken
//! down (briefly, and for longer than the grace), a SIGKILLed daemon, and
//! `pcl down` with a host unreachable. Every bound below is a hang check,
//! generous for a loaded CI machine, never a speed test.
//! Needs root and iproute2; skipped otherwise (fails with PCL_TEST_REQUIRE).

mod common;

use common::*;
use std::thread;
use std::time::{Duration, Instant};

/// Wait until engine `id` is in `want`; panic with the status otherwise.
#[track_caller]
fn wait_state(env: &Env, id: u32, want: &str, within: Duration) {
    if !wait_until(within, || engine_state(&env.status_json(), id) == want) {
        panic!(
            "engine {id} not {want} within {within:?}: {}\nsession processes:\n{}\n{}",
            env.status_json(),
            format_procs(&session_processes(&env.session)),
            env.logs()
        );
    }
}

/// Engine host processes of the session in namespace host `i`.
fn engine_hosts_in(hosts: &NetnsHosts, env: &Env, i: usize) -> Vec<i32> {
    let ns = &hosts.hosts()[i].netns;
    engine_pids(&env.session)
        .into_iter()
        .filter(|&pid| netns_of(pid) == *ns)
        .collect()
}

/// A cluster of one engine per namespace host, with these extra keys on
/// every host (`link_timeout = 2`, ...).
fn cluster(env: &Env, hosts: &NetnsHosts, engines: usize, extra: &[&str]) -> std::path::PathBuf {
    let hs: Vec<Host> = (0..hosts.len())
        .map(|i| {
            extra
                .iter()
                .fold(hosts.host(i).engines(engines), |h, line| h.raw(line))
        })
        .collect();
    env.write_cluster(&hs)
}

fn cmdline(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

/// Whether any process in namespace host `i` runs a command line
/// starting with `prefix`.
fn running_in(hosts: &NetnsHosts, i: usize, prefix: &str) -> usize {
    hosts
        .pids_in(i)
        .into_iter()
        .filter(|&p| cmdline(p).starts_with(prefix))
        .count()
}

/// Wait until only sshd's listener is left in namespace host `i`.
#[track_caller]
fn assert_host_clean(hosts: &NetnsHosts, i: usize, within: Duration) {
    let sshd = hosts.sshd_pid(i);
    let left = || -> Vec<String> {
        hosts
            .pids_in(i)
            .into_iter()
            .filter(|&p| p != sshd)
            .map(|p| format!("  pid {p}: {}", cmdline(p)))
            .collect()
    };
    if !wait_until(within, || left().is_empty()) {
        panic!(
            "processes left on host {i} after {within:?}:\n{}",
            left().join("\n")
        );
    }
}

fn kill9(pid: i32) {
    // SAFETY: kill(2) on a process this test's session started.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
}

/// The host whose link a test cut comes back even if the test fails, so
/// the harness can clean up there.
struct LinkGuard<'a>(&'a NetnsHosts, usize);

impl Drop for LinkGuard<'_> {
    fn drop(&mut self) {
        self.0.link_up(self.1);
    }
}

#[test]
fn faults_killed_engine_host_is_dead_then_restart_brings_it_back_fresh() {
    let Some(hosts) = NetnsHosts::new(3) else {
        return;
    };
    let env = Env::new();
    let table = env.up([cluster(&env, &hosts, 2, &[])]);
    assert_eq!(table.len(), 6);
    let victim_host = hosts.addr(1).to_string();
    let victims = engines_on(&table, &victim_host);
    let live = engines_off(&table, &victim_host);
    env.px(["v=kept-$PCL_ENGINE_ID; sleep 1000 &"]).success();

    // `pcl up` on a running session says so and changes nothing.
    env.pcl(["up", &cluster(&env, &hosts, 2, &[]).to_string_lossy()])
        .run()
        .failure()
        .assert_stderr_contains("already running");

    let pids = engine_hosts_in(&hosts, &env, 1);
    assert_eq!(pids.len(), 1, "one engine host process on host 1");
    let live_pids: Vec<i32> = [0, 2]
        .iter()
        .flat_map(|&i| engine_hosts_in(&hosts, &env, i))
        .collect();
    kill9(pids[0]);
    for &id in &victims {
        wait_state(&env, id, "dead", Duration::from_secs(10));
    }
    let v = env.status_json();
    for &id in &live {
        assert_eq!(engine_state(&v, id), "idle", "{v}");
    }
    // The shells and their children (the guard's work: the engine host
    // could not clean up) went with their engine host.
    let ns1 = hosts.hosts()[1].netns.clone();
    let shells_gone = wait_until(Duration::from_secs(10), || {
        session_processes(&env.session)
            .iter()
            .all(|p| netns_of(p.pid) != ns1)
    });
    assert!(
        shells_gone,
        "processes of the killed engine host left in its namespace"
    );

    let out = env.px(["echo $v"]).assert_exit(255);
    let expect: Vec<(u32, String)> = live.iter().map(|&id| (id, format!("kept-{id}"))).collect();
    assert_eq!(px_stdout_lines(&out), expect, "{}", out.describe());
    for id in &victims {
        assert!(
            out.stderr.contains(&format!("engine {id}")),
            "stderr names dead engine {id}\n{}",
            out.describe()
        );
    }

    // Restarting live engines is a no-op that says so.
    let out = env
        .pcl(["restart", "-t", &live[0].to_string()])
        .run()
        .success();
    assert!(out.stdout.is_empty(), "{}", out.describe());

    let out = env.pcl(["restart"]).run().success();
    assert!(
        out.stderr.contains("fresh state"),
        "restart says the state is fresh\n{}",
        out.describe()
    );
    let restarted = parse_engine_table(&out);
    let expect: Vec<(u32, String)> = victims
        .iter()
        .map(|&id| (id, victim_host.clone()))
        .collect();
    assert_eq!(restarted, expect, "{}", out.describe());
    assert_eq!(engine_hosts_in(&hosts, &env, 1).len(), 1);
    let still: Vec<i32> = [0, 2]
        .iter()
        .flat_map(|&i| engine_hosts_in(&hosts, &env, i))
        .collect();
    assert_eq!(still, live_pids, "live engine hosts were not touched");

    let out = env.px(["echo ${v:-fresh}-$PCL_ENGINE_ID"]).success();
    let got = px_stdout_lines(&out);
    for (id, text) in got {
        let want = if victims.contains(&id) {
            format!("fresh-{id}")
        } else {
            format!("kept-{id}-{id}")
        };
        assert_eq!(text, want, "{}", out.describe());
    }

    env.down_leaving_nothing(&hosts);
}

#[test]
fn faults_link_down_mid_px_fails_that_engine_then_reconnects_with_its_state() {
    let Some(hosts) = NetnsHosts::new(3) else {
        return;
    };
    let env = Env::new();
    let table = env.up([cluster(
        &env,
        &hosts,
        1,
        &["link_timeout = 3", "reconnect_grace = 60"],
    )]);
    let victim_host = hosts.addr(1).to_string();
    let victim = engines_on(&table, &victim_host)[0];
    env.px(["v=kept-$PCL_ENGINE_ID"]).success();
    let engine_host = engine_hosts_in(&hosts, &env, 1);

    // The victim sleeps long; the others print and end at once.
    let started = Instant::now();
    let px = {
        let cmd = env.pcl([
            "px",
            &format!(
                "echo hi-$PCL_ENGINE_ID; if [ \"$PCL_HOST\" = {victim_host} ]; then sleep 30; fi"
            ),
        ]);
        thread::spawn(move || cmd.timeout_secs(60).run())
    };
    // Until the victim's shell runs the sleep.
    let sleeping = wait_until(Duration::from_secs(10), || {
        running_in(&hosts, 1, "sleep 30 ") > 0
    });
    assert!(sleeping, "the victim never started its sleep");
    hosts.link_down(1);
    let guard = LinkGuard(&hosts, 1);
    let out = px.join().expect("px thread");
    let took = started.elapsed();
    assert_eq!(out.code, Some(255), "{}", out.describe());
    assert!(
        took < Duration::from_secs(20),
        "px took {took:?} with a 3 s link timeout\n{}",
        out.describe()
    );
    let lines = px_stdout_lines(&out);
    for (id, _) in table.iter().filter(|(id, _)| *id != victim) {
        assert!(
            lines.contains(&(*id, format!("hi-{id}"))),
            "engine {id}'s output printed\n{}",
            out.describe()
        );
    }
    assert!(
        out.stderr.contains(&format!("engine {victim}")),
        "stderr names the lost engine\n{}",
        out.describe()
    );
    let v = env.status_json();
    assert_eq!(engine_state(&v, victim), "dead", "{v}");

    // Back inside the grace: the same engine host, its state intact, and
    // the command nobody was waiting for any more is gone.
    thread::sleep(Duration::from_secs(2));
    drop(guard);
    wait_state(&env, victim, "idle", Duration::from_secs(20));
    assert_eq!(
        engine_hosts_in(&hosts, &env, 1),
        engine_host,
        "same engine host"
    );
    let out = env.px(["echo $v"]).success();
    assert!(
        started.elapsed() < Duration::from_secs(28),
        "the shell was busy with the abandoned sleep 30 until it ended\n{}",
        out.describe()
    );
    let expect: Vec<(u32, String)> = table
        .iter()
        .map(|(id, _)| (*id, format!("kept-{id}")))
        .collect();
    assert_eq!(px_stdout_lines(&out), expect, "{}", out.describe());
    assert!(
        running_in(&hosts, 1, "sleep 30 ") == 0,
        "the abandoned sleep 30 still runs"
    );

    env.down_leaving_nothing(&hosts);
}

#[test]
fn faults_link_down_beyond_the_grace_gives_the_host_up_and_leaves_nothing_there() {
    let Some(hosts) = NetnsHosts::new(2) else {
        return;
    };
    let env = Env::new();
    let table = env.up([cluster(
        &env,
        &hosts,
        2,
        &["link_timeout = 2", "reconnect_grace = 4"],
    )]);
    let victim_host = hosts.addr(1).to_string();
    let victims = engines_on(&table, &victim_host);
    env.px(["sleep 1000 & v=1"]).success();

    hosts.link_down(1);
    let guard = LinkGuard(&hosts, 1);
    // Given up: dead for good, no longer "reconnecting".
    let given_up = wait_until(Duration::from_secs(30), || {
        let v = env.status_json();
        victims.iter().all(|&id| {
            v["engines"][id as usize]["reason"]
                .as_str()
                .is_some_and(|r| r.contains("not back within"))
        })
    });
    assert!(
        given_up,
        "host not given up 30 s into a 4 s grace: {}",
        env.status_json()
    );
    // Meanwhile on the cut-off host, the engine host noticed it is alone
    // and took its shells and their `sleep 1000` with it, link or no link.
    let alone = wait_until(Duration::from_secs(20), || {
        engine_hosts_in(&hosts, &env, 1).is_empty()
            && running_in(&hosts, 1, "bash ") == 0
            && running_in(&hosts, 1, "sleep 1000 ") == 0
    });
    assert!(
        alone,
        "engine host or its shells still run on the cut-off host:\n{}",
        format_procs(&session_processes(&env.session))
    );
    // Once the link is back, the leftover sshd connection learns that its
    // client is gone (TCP retransmissions back off, hence the wait).
    drop(guard);
    assert_host_clean(&hosts, 1, Duration::from_secs(60));
    // The other host was never disturbed.
    let out = env.px(["echo $v"]).assert_exit(255);
    assert_eq!(
        px_stdout_lines(&out).len(),
        2,
        "host 0's engines answer\n{}",
        out.describe()
    );

    env.down_leaving_nothing(&hosts);
}

#[test]
fn faults_killed_daemon_takes_every_engine_shell_and_child_with_it() {
    let Some(hosts) = NetnsHosts::new(3) else {
        return;
    };
    let env = Env::new();
    env.up([cluster(&env, &hosts, 2, &[])]);
    // A child in the background of every shell, and a blocking px running
    // in every shell when the daemon dies.
    env.px(["sleep 1000 &"]).success();
    let px = {
        let cmd = env.pcl(["px", "sleep 999"]);
        thread::spawn(move || cmd.timeout_secs(60).execute())
    };
    let running = wait_until(Duration::from_secs(10), || {
        (0..hosts.len()).all(|i| running_in(&hosts, i, "sleep 999 ") == 2)
    });
    assert!(running, "px sleep 999 not running on every engine");
    let daemons = daemon_pids(&env.session);
    assert_eq!(daemons.len(), 1);
    kill9(daemons[0]);

    let out = px.join().expect("px thread").expect("px ran");
    assert!(!out.timed_out, "px hung after the daemon died");
    assert_ne!(out.code, Some(0), "{}", out.describe());

    // The SSH tethers close, the engine hosts read end-of-file: nothing of
    // the session stays anywhere, in the namespaces or here.
    for i in 0..hosts.len() {
        assert_host_clean(&hosts, i, Duration::from_secs(20));
    }
    assert_nothing_left(&env.session);
    env.pcl(["status"])
        .run()
        .failure()
        .assert_stderr_contains("run pcl up");
}

#[test]
fn faults_down_with_a_host_unreachable_returns_and_leaves_nothing() {
    let Some(hosts) = NetnsHosts::new(2) else {
        return;
    };
    let env = Env::new();
    env.up([cluster(&env, &hosts, 1, &["reconnect_grace = 10"])]);
    env.px(["sleep 1000 &"]).success();

    hosts.link_down(1);
    let guard = LinkGuard(&hosts, 1);
    let out = env.pcl(["down"]).timeout_secs(30).run().success();
    assert!(
        out.elapsed < Duration::from_secs(15),
        "pcl down took {:?} with one host unreachable",
        out.elapsed
    );
    // Here and on the reachable host, nothing is left at once.
    let ns1 = hosts.hosts()[1].netns.clone();
    let elsewhere = || -> Vec<Proc> {
        session_processes(&env.session)
            .into_iter()
            .filter(|p| netns_of(p.pid) != ns1)
            .collect()
    };
    if !wait_until(LEFTOVER_GRACE, || elsewhere().is_empty()) {
        panic!(
            "left after pcl down, outside the cut-off host:\n{}",
            format_procs(&elsewhere())
        );
    }
    assert_host_clean(&hosts, 0, LEFTOVER_GRACE);
    // The unreachable one cleans up once the link is back (the tether's
    // end arrives) or the grace has passed (the engine host is alone).
    thread::sleep(Duration::from_secs(3));
    drop(guard);
    assert_host_clean(&hosts, 1, Duration::from_secs(60));
    assert_nothing_left(&env.session);
}

#[test]
fn faults_link_blip_shorter_than_the_timeout_is_ridden_out_mid_px() {
    let Some(hosts) = NetnsHosts::new(2) else {
        return;
    };
    let env = Env::new();
    env.up([cluster(&env, &hosts, 1, &["link_timeout = 6"])]);
    let engine_host = engine_hosts_in(&hosts, &env, 1);
    let px = {
        let cmd = env.pcl(["px", "sleep 3; echo done-$PCL_ENGINE_ID"]);
        thread::spawn(move || cmd.timeout_secs(60).run())
    };
    let sleeping = wait_until(Duration::from_secs(10), || {
        running_in(&hosts, 1, "sleep 3 ") > 0
    });
    assert!(sleeping, "the command never started on host 1");
    hosts.link_down(1);
    let guard = LinkGuard(&hosts, 1);
    thread::sleep(Duration::from_secs(2));
    drop(guard);
    // QUIC retransmits what was lost: the call completes as if nothing
    // happened, on the same connection and engine host.
    let out = px.join().expect("px thread").success();
    assert_eq!(
        px_stdout_lines(&out),
        vec![(0, "done-0".to_string()), (1, "done-1".to_string())],
        "{}",
        out.describe()
    );
    assert!(
        !env.logs().contains("connection lost"),
        "the blip was not ridden out:\n{}",
        env.logs()
    );
    assert_eq!(engine_hosts_in(&hosts, &env, 1), engine_host);

    env.down_leaving_nothing(&hosts);
}

#[test]
fn faults_link_cut_mid_map_costs_only_that_hosts_work() {
    let Some(hosts) = NetnsHosts::new(3) else {
        return;
    };
    let env = Env::new();
    let table = env.up([cluster(
        &env,
        &hosts,
        1,
        &["link_timeout = 3", "reconnect_grace = 60"],
    )]);
    env.px(["v=kept-$PCL_ENGINE_ID"]).success();
    let victim_host = hosts.addr(1).to_string();
    let victim = engines_on(&table, &victim_host)[0];
    let items: Vec<String> = (1..=90).map(|i| i.to_string()).collect();
    let started = Instant::now();
    let map = {
        let cmd = env
            .pcl(["map", "sleep 0.1; echo {}"])
            .args(&items)
            .timeout_secs(90);
        thread::spawn(move || cmd.run())
    };
    let busy = wait_until(Duration::from_secs(10), || {
        running_in(&hosts, 1, "sleep 0.1") > 0
    });
    assert!(busy, "the victim never got a task");
    hosts.link_down(1);
    let guard = LinkGuard(&hosts, 1);
    // The victim's unfinished items run on the others: every item once,
    // in order, success, in bounded time.
    let out = map.join().expect("map thread").success();
    let want: String = items.iter().map(|i| format!("{i}\n")).collect();
    assert_eq!(out.stdout_str(), want, "{}", out.describe());
    assert!(
        started.elapsed() < Duration::from_secs(45),
        "map took {:?} with a 3 s link timeout",
        started.elapsed()
    );

    // Back within the grace: the same engine, state intact, shell free.
    drop(guard);
    wait_state(&env, victim, "idle", Duration::from_secs(20));
    let out = env.px(["echo $v"]).success();
    let expect: Vec<(u32, String)> = table
        .iter()
        .map(|(id, _)| (*id, format!("kept-{id}")))
        .collect();
    assert_eq!(px_stdout_lines(&out), expect, "{}", out.describe());

    env.down_leaving_nothing(&hosts);
}

#[test]
fn faults_async_px_with_a_host_killed_finishes_and_reports_it() {
    let Some(hosts) = NetnsHosts::new(2) else {
        return;
    };
    let env = Env::new();
    let table = env.up([cluster(&env, &hosts, 1, &[])]);
    let victim_host = hosts.addr(1).to_string();
    let victim = engines_on(&table, &victim_host)[0];
    let good = engines_off(&table, &victim_host)[0];
    let id = env
        .pcl(["px", "--async", "sleep 3; echo done-$PCL_ENGINE_ID"])
        .run()
        .success()
        .stdout_str()
        .trim()
        .to_string();
    let sleeping = wait_until(Duration::from_secs(10), || {
        running_in(&hosts, 1, "sleep 3") > 0
    });
    assert!(sleeping, "the job never started on host 1");
    let pids = engine_hosts_in(&hosts, &env, 1);
    kill9(pids[0]);

    // The job ends (no wait for a host that is gone) with the survivor's
    // output and 255 for the dead engine, as the sync call would.
    env.pcl(["wait", &id])
        .timeout_secs(30)
        .run()
        .assert_exit(255);
    let out = env.pcl(["result", &id]).run().assert_exit(255);
    assert_eq!(
        px_stdout_lines(&out),
        vec![(good, format!("done-{good}"))],
        "{}",
        out.describe()
    );
    assert!(
        out.stderr.contains(&format!("engine {victim}")),
        "{}",
        out.describe()
    );

    env.down_leaving_nothing(&hosts);
}

/// Two namespace hosts, each engine with a workdir of its own, a 3 s link
/// timeout, and a grace long enough to come back.
fn two_hosts_with_workdirs(
    env: &Env,
    hosts: &NetnsHosts,
) -> (Vec<(u32, String)>, Vec<std::path::PathBuf>) {
    let workdirs: Vec<std::path::PathBuf> =
        (0..2).map(|i| env.path().join(format!("w{i}"))).collect();
    let hs: Vec<Host> = (0..2)
        .map(|i| {
            hosts
                .host(i)
                .workdir(&workdirs[i].to_string_lossy())
                .raw("link_timeout = 3")
                .raw("reconnect_grace = 60")
        })
        .collect();
    let table = env.up([env.write_cluster(&hs)]);
    (table, workdirs)
}

/// Shape host `i`'s traffic in both directions to 40 Mbit/s, so a cut
/// lands mid-transfer.
fn slow_link(hosts: &NetnsHosts, i: usize) {
    let tbf = [
        "root", "tbf", "rate", "40mbit", "burst", "32kbit", "latency", "400ms",
    ];
    let veth = hosts.hosts()[i].veth.clone();
    Cmd::new("tc")
        .args(["qdisc", "add", "dev", &veth])
        .args(tbf)
        .run()
        .success();
    let netns = hosts.hosts()[i].netns.clone();
    Cmd::new("ip")
        .args(["netns", "exec", &netns, "tc", "qdisc", "add", "dev", "eth0"])
        .args(tbf)
        .run()
        .success();
}

/// After host 1's link is back within the grace: its engine `id` is idle
/// with its state (`v`), and host 1 holds neither `name` nor a partial file.
#[track_caller]
fn assert_back_with_nothing_half_written(
    env: &Env,
    id: u32,
    workdir: &std::path::Path,
    name: &str,
) {
    wait_state(env, id, "idle", Duration::from_secs(20));
    let clean = wait_until(Duration::from_secs(10), || {
        pcl_temp_files(workdir).is_empty()
    });
    assert!(
        clean,
        "partial files left on host 1: {:?}",
        pcl_temp_files(workdir)
    );
    assert!(!workdir.join(name).exists(), "no half {name} on host 1");
    let out = env.px(["echo $v"]).success();
    assert_eq!(
        px_stdout_lines(&out),
        vec![(0, "kept-0".to_string()), (1, "kept-1".to_string())],
        "{}",
        out.describe()
    );
}

/// 64 MiB of a fixed pattern, quick to make, for transfers to cut.
fn patterned_64_mib() -> Vec<u8> {
    (0..64u32 << 20)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect()
}

/// Run `pcl ARGS`, cut host 1's link once `arriving` holds (the transfer
/// to or from host 1 is under way), and check the call fails within reach
/// of the 3 s link timeout, naming engine 1. The guard it returns brings
/// the link back when dropped.
#[track_caller]
fn cut_host_1_during<'a>(
    env: &Env,
    hosts: &'a NetnsHosts,
    args: &[&str],
    arriving: impl Fn() -> bool,
) -> LinkGuard<'a> {
    let started = Instant::now();
    let call = {
        let cmd = env.pcl(args).timeout_secs(120);
        thread::spawn(move || cmd.run())
    };
    assert!(
        wait_until(Duration::from_secs(30), arriving),
        "the transfer with host 1 never started"
    );
    hosts.link_down(1);
    let guard = LinkGuard(hosts, 1);
    let out = call.join().expect("pcl thread").assert_exit(255);
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{args:?} took {:?} with a 3 s link timeout",
        started.elapsed()
    );
    assert!(
        out.stderr.contains("engine 1"),
        "stderr names the cut-off engine\n{}",
        out.describe()
    );
    guard
}

#[test]
fn faults_link_cut_mid_push_fails_that_host_only_and_leaves_no_partial_file() {
    let Some(hosts) = NetnsHosts::new(2) else {
        return;
    };
    let env = Env::new();
    let (table, workdirs) = two_hosts_with_workdirs(&env, &hosts);
    env.px(["v=kept-$PCL_ENGINE_ID"]).success();
    slow_link(&hosts, 1);
    let data = patterned_64_mib();
    let file = env.write("big.bin", &data);
    let sum = sha256_hex(&data);
    drop(data);
    let file = file.to_string_lossy();
    let guard = cut_host_1_during(&env, &hosts, &["push", "--file", &file], || {
        !pcl_temp_files(&workdirs[1]).is_empty()
    });
    let got = std::fs::read(workdirs[0].join("big.bin")).expect("host 0 has the file");
    assert_eq!(sha256_hex(&got), sum, "host 0's copy is whole");

    drop(guard);
    assert_back_with_nothing_half_written(&env, table[1].0, &workdirs[1], "big.bin");
    env.down_leaving_nothing(&hosts);
}

#[test]
fn faults_link_cut_mid_pull_fails_that_host_only_and_leaves_no_partial_file() {
    let Some(hosts) = NetnsHosts::new(2) else {
        return;
    };
    let env = Env::new();
    let (table, workdirs) = two_hosts_with_workdirs(&env, &hosts);
    let data = patterned_64_mib();
    for dir in &workdirs {
        std::fs::write(dir.join("big.bin"), &data).unwrap();
    }
    let sum = sha256_hex(&data);
    drop(data);
    slow_link(&hosts, 1);
    let dest = env.path().join("dest");
    std::fs::create_dir(&dest).unwrap();
    let dir = dest.to_string_lossy();
    let args = ["pull", "--file", "big.bin", "--dest", &dir];
    let guard = cut_host_1_during(&env, &hosts, &args, || {
        pcl_temp_files(&dest).len() == 1 && dest.join("big.bin.0").exists()
    });
    let got = std::fs::read(dest.join("big.bin.0")).expect("engine 0's file arrived");
    assert_eq!(sha256_hex(&got), sum, "engine 0's copy is whole");
    assert!(
        pcl_temp_files(&dest).is_empty() && !dest.join("big.bin.1").exists(),
        "no partial file from engine 1: {:?}",
        std::fs::read_dir(&dest).unwrap().collect::<Vec<_>>()
    );

    // Back within the grace, the engine answers again.
    drop(guard);
    wait_state(&env, table[1].0, "idle", Duration::from_secs(20));
    env.px(["true"]).success();
    env.down_leaving_nothing(&hosts);
}

#[test]
fn faults_link_cut_mid_scatter_fails_that_host_only_and_leaves_no_partial_file() {
    let Some(hosts) = NetnsHosts::new(2) else {
        return;
    };
    let env = Env::new();
    let (table, workdirs) = two_hosts_with_workdirs(&env, &hosts);
    env.px(["v=kept-$PCL_ENGINE_ID"]).success();
    slow_link(&hosts, 1);
    // 2 x 32 MiB of numbered lines: the first half is engine 0's block.
    let mut lines = Vec::new();
    let mut n = 0u64;
    while lines.len() < 64 << 20 {
        lines.extend_from_slice(format!("line {n:012}\n").as_bytes());
        n += 1;
    }
    let input = env.write("lines.txt", &lines);
    let input = input.to_string_lossy();
    let args = ["scatter", "--file", "part", "--from", &input];
    let guard = cut_host_1_during(&env, &hosts, &args, || {
        !pcl_temp_files(&workdirs[1]).is_empty()
    });
    let part = std::fs::read(workdirs[0].join("part")).expect("engine 0 has its block");
    assert!(
        !part.is_empty() && lines.starts_with(&part) && part.ends_with(b"\n"),
        "engine 0's block is the whole first part of the input"
    );

    drop(guard);
    assert_back_with_nothing_half_written(&env, table[1].0, &workdirs[1], "part");
    env.down_leaving_nothing(&hosts);
}

#[test]
fn faults_interrupt_with_a_link_down_stops_the_rest_and_then_that_host() {
    let Some(hosts) = NetnsHosts::new(2) else {
        return;
    };
    let env = Env::new();
    let (table, _) = two_hosts_with_workdirs(&env, &hosts);
    let job = env
        .pcl(["px", "--async", "sleep 1000"])
        .run()
        .success()
        .stdout_str()
        .trim()
        .to_string();
    let sleeping = || running_in(&hosts, 0, "sleep 1000") + running_in(&hosts, 1, "sleep 1000");
    assert!(
        wait_until(Duration::from_secs(20), || sleeping() == 2),
        "the sleeps never started"
    );
    hosts.link_down(1);
    let guard = LinkGuard(&hosts, 1);
    let started = Instant::now();
    let out = env.pcl(["interrupt"]).timeout_secs(60).run();
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "interrupt took {:?} with one link down\n{}",
        started.elapsed(),
        out.describe()
    );
    assert!(
        wait_until(Duration::from_secs(5), || running_in(
            &hosts,
            0,
            "sleep 1000"
        ) == 0),
        "host 0's sleep survived the interrupt"
    );
    // The job ends: host 0 interrupted, host 1 unreachable.
    let out = env.pcl(["wait", &job]).timeout_secs(60).run();
    assert_ne!(out.code, Some(0), "{}", out.describe());
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the job took {:?} to end",
        started.elapsed()
    );
    // Back within the grace: nobody waits for host 1's sleep any more,
    // so it is stopped, and the engine takes work again.
    drop(guard);
    wait_state(&env, table[1].0, "idle", Duration::from_secs(20));
    assert!(
        wait_until(Duration::from_secs(20), || running_in(
            &hosts,
            1,
            "sleep 1000"
        ) == 0),
        "host 1's abandoned sleep is still running"
    );
    env.px(["true"]).success();
    env.down_leaving_nothing(&hosts);
}
