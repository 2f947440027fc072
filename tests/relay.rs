//! A relayed `push --file` on namespace hosts: the file leaves the daemon
//! once and every host's copy checks out; a relay host SIGKILLed and
//! another cut off mid-push fail alone while the hosts after them still
//! get the whole file; `relay = false` sends every copy from the daemon;
//! hosts that cannot reach one another fall back to direct sends, said
//! once. Bounds are hang checks, never speed tests.
//! Needs root and iproute2; skipped otherwise (fails with PCL_TEST_REQUIRE).

mod common;

use common::*;
use std::path::PathBuf;
use std::thread;
use std::time::Duration;

/// A cluster of one engine per namespace host, each with a workdir of its
/// own, these keys on every host; the session is up when it returns.
fn up(env: &Env, hosts: &NetnsHosts, extra: &[&str]) -> Vec<PathBuf> {
    let workdirs: Vec<PathBuf> = (0..hosts.len())
        .map(|i| env.path().join(format!("w{i}")))
        .collect();
    let cluster: Vec<Host> = (0..hosts.len())
        .map(|i| {
            let host = hosts.host(i).workdir(&workdirs[i].to_string_lossy());
            extra.iter().fold(host, |h, line| h.raw(line))
        })
        .collect();
    env.up([env.write_cluster(&cluster)]);
    workdirs
}

fn pushed(env: &Env, size: usize, seed: u64) -> (PathBuf, String) {
    let data = XorShift(seed).bytes(size);
    let sum = sha256_hex(&data);
    (env.write("big.bin", &data), sum)
}

#[track_caller]
fn assert_copies(
    workdirs: &[PathBuf],
    which: impl Iterator<Item = usize>,
    sum: &str,
    out: &Output,
) {
    for i in which {
        let got = std::fs::read(workdirs[i].join("big.bin"))
            .unwrap_or_else(|e| panic!("host {i} has no copy: {e}\n{}", out.describe()));
        assert_eq!(sha256_hex(&got), sum, "host {i}'s copy\n{}", out.describe());
        assert!(
            pcl_temp_files(&workdirs[i]).is_empty(),
            "temporary file on host {i}"
        );
    }
}

const MIB: u64 = 1 << 20;

#[test]
fn relay_to_six_hosts_sends_the_file_out_once_and_every_copy_checks_out() {
    let Some(hosts) = NetnsHosts::new(6) else {
        return;
    };
    let env = Env::new();
    let workdirs = up(&env, &hosts, &[]);
    let (file, sum) = pushed(&env, 48 << 20, 18);
    let before = hosts.bridge_tx_bytes();
    let out = env
        .pcl(["push", "--file", &file.to_string_lossy()])
        .timeout_secs(120)
        .run()
        .success();
    let sent = hosts.bridge_tx_bytes() - before;
    assert_copies(&workdirs, 0..6, &sum, &out);
    assert_eq!(out.stderr, "", "nothing to say\n{}", out.describe());
    // Once, with QUIC's and the hosts' overhead, but far from six copies.
    assert!(
        sent < 48 * MIB * 3 / 2,
        "the daemon sent {} MiB for a 48 MiB file to 6 hosts",
        sent / MIB
    );
    env.down_leaving_nothing(&hosts);
}

#[test]
fn relay_off_sends_every_copy_from_the_daemon() {
    let Some(hosts) = NetnsHosts::new(3) else {
        return;
    };
    let env = Env::new();
    let workdirs = up(&env, &hosts, &["relay = false"]);
    let (file, sum) = pushed(&env, 16 << 20, 3);
    let before = hosts.bridge_tx_bytes();
    let out = env
        .pcl(["push", "--file", &file.to_string_lossy()])
        .timeout_secs(120)
        .run()
        .success();
    let sent = hosts.bridge_tx_bytes() - before;
    assert_copies(&workdirs, 0..3, &sum, &out);
    assert!(
        sent >= 3 * 16 * MIB,
        "relay = false, yet the daemon sent only {} MiB for 3 copies of 16 MiB",
        sent / MIB
    );
    env.down_leaving_nothing(&hosts);
}

#[test]
fn hosts_that_cannot_reach_one_another_get_direct_copies_said_once() {
    let Some(hosts) = NetnsHosts::new(3) else {
        return;
    };
    let env = Env::new();
    let workdirs = up(&env, &hosts, &["link_timeout = 2"]);
    for (i, j) in [(0, 1), (0, 2), (1, 2)] {
        hosts.separate(i, j);
    }
    let (file, sum) = pushed(&env, 8 << 20, 5);
    let out = env
        .pcl(["push", "--file", &file.to_string_lossy()])
        .timeout_secs(120)
        .run()
        .success();
    assert_copies(&workdirs, 0..3, &sum, &out);
    let remarks: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains("could not relay"))
        .collect();
    assert_eq!(remarks.len(), 1, "said once\n{}", out.describe());
    for i in [1, 2] {
        assert!(
            remarks[0].contains(hosts.addr(i)),
            "names host {i}\n{}",
            out.describe()
        );
    }
    env.down_leaving_nothing(&hosts);
}

/// The host whose link a test cut comes back even if the test fails.
struct LinkGuard<'a>(&'a NetnsHosts, usize);

impl Drop for LinkGuard<'_> {
    fn drop(&mut self) {
        self.0.link_up(self.1);
    }
}

#[test]
fn relay_hosts_killed_or_cut_mid_push_fail_alone_and_the_hosts_after_them_complete() {
    let Some(hosts) = NetnsHosts::new(6) else {
        return;
    };
    let env = Env::new();
    let workdirs = up(&env, &hosts, &["link_timeout = 4", "reconnect_grace = 60"]);
    // Slow enough that the faults land mid-push.
    for i in 0..6 {
        hosts.shape(i, "80mbit");
    }
    let (file, sum) = pushed(&env, 64 << 20, 7);
    let push = {
        let cmd = env
            .pcl(["push", "--file", &file.to_string_lossy()])
            .timeout_secs(180);
        thread::spawn(move || cmd.run())
    };
    // The chain runs in host order: 1 and 3 pass the stream on.
    let arriving = |i: usize| {
        pcl_temp_files(&workdirs[i])
            .iter()
            .any(|name| std::fs::metadata(workdirs[i].join(name)).is_ok_and(|m| m.len() > 4 * MIB))
    };
    assert!(
        wait_until(Duration::from_secs(60), || arriving(3)),
        "the push never reached host 3"
    );
    let victim = engine_pids(&env.session)
        .into_iter()
        .find(|&pid| netns_of(pid) == hosts.hosts()[1].netns)
        .expect("the engine host of host 1");
    // SAFETY: kill(2) on a process this test's session started.
    unsafe {
        libc::kill(victim, libc::SIGKILL);
    }
    hosts.link_down(3);
    let guard = LinkGuard(&hosts, 3);
    let out = push.join().expect("pcl thread").assert_exit(255);
    assert_copies(&workdirs, [0, 2, 4, 5].into_iter(), &sum, &out);
    for victim in [1, 3] {
        assert!(
            out.stderr.contains(&format!("engine {victim} ")),
            "engine {victim} fails\n{}",
            out.describe()
        );
    }
    assert!(
        !out.stderr.contains("engine 2 ") && !out.stderr.contains("engine 4 "),
        "{}",
        out.describe()
    );
    assert!(
        !workdirs[1].join("big.bin").exists(),
        "no copy on the killed host"
    );
    drop(guard);
    // The cut-off host's engine host drops its temporary file once it
    // has heard nothing for the link timeout; the killed one's guard at once.
    for victim in [1, 3] {
        assert!(
            wait_until(Duration::from_secs(20), || pcl_temp_files(
                &workdirs[victim]
            )
            .is_empty()),
            "partial file left on host {victim}: {:?}",
            pcl_temp_files(&workdirs[victim])
        );
        assert!(
            !workdirs[victim].join("big.bin").exists(),
            "no copy on host {victim}"
        );
    }
    // The cut-off host comes back within the grace before the session
    // stops, so its tether is there to take it down.
    let back = || {
        env.pcl(["ids"])
            .run()
            .stdout_str()
            .lines()
            .any(|l| l == "3")
    };
    assert!(
        wait_until(Duration::from_secs(30), back),
        "host 3 never came back"
    );
    env.down();
    assert_nothing_left(&env.session);
    // Host 3's sshd may still wait on its cut connection.
    hosts.assert_only_sshd_processes_left();
}
