//! Hosts only ssh can reach, behind a bastion (ProxyJump, ProxyCommand):
//! the session's traffic rides the ssh channel there, and every verb works
//! across direct and hidden hosts alike.

mod common;

use common::*;
use std::time::Duration;

/// (host, transport) per engine, from `pcl status --json`.
fn routes(env: &Env) -> Vec<(String, String)> {
    env.status_json()["engines"]
        .as_array()
        .expect("engines")
        .iter()
        .map(|e| {
            (
                e["host"].as_str().expect("host").to_string(),
                e["transport"].as_str().unwrap_or("none").to_string(),
            )
        })
        .collect()
}

#[test]
fn bastion_auto_takes_the_ssh_channel_for_hidden_hosts_and_udp_for_the_others() {
    let Some(net) = Bastion::new(2) else { return };
    let env = Env::new();
    let cluster = env.write_cluster(&[
        net.direct(1).engines(2),
        net.hidden(VIA_PROXY_JUMP).engines(2),
        net.direct(2),
        net.hidden(VIA_PROXY_COMMAND),
    ]);
    let out = env
        .pcl(["up", &cluster.to_string_lossy()])
        .timeout_secs(90)
        .run()
        .success();
    let table = parse_engine_table(&out);
    let (d1, d2) = (net.hosts.addr(1).to_string(), net.hosts.addr(2).to_string());
    let hosts: Vec<&str> = table.iter().map(|(_, h)| h.as_str()).collect();
    assert_eq!(
        hosts,
        [
            &d1,
            &d1,
            VIA_PROXY_JUMP,
            VIA_PROXY_JUMP,
            &d2,
            VIA_PROXY_COMMAND
        ],
        "{}",
        out.describe()
    );
    // Said once per hidden host, never for a direct one.
    for name in [VIA_PROXY_JUMP, VIA_PROXY_COMMAND] {
        let said = format!("pcl: host {name}: ");
        assert_eq!(out.stderr.matches(&said).count(), 1, "{}", out.describe());
        assert!(
            out.stderr
                .lines()
                .any(|l| l.starts_with(&said)
                    && l.ends_with("the session goes over the ssh channel")),
            "{}",
            out.describe()
        );
    }
    assert!(!out.stderr.contains(&d1), "{}", out.describe());
    // The ProxyJump host's name resolves (its HostName) but nothing routes
    // there: UDP was tried. The ProxyCommand alias does not resolve at all.
    assert!(
        out.stderr
            .contains("no QUIC answer over UDP from 10.199.0.1:"),
        "{}",
        out.describe()
    );
    let expected: Vec<(String, String)> = [
        (&d1, "quic"),
        (&d1, "quic"),
        (&VIA_PROXY_JUMP.to_string(), "ssh"),
        (&VIA_PROXY_JUMP.to_string(), "ssh"),
        (&d2, "quic"),
        (&VIA_PROXY_COMMAND.to_string(), "ssh"),
    ]
    .iter()
    .map(|(h, t)| (h.to_string(), t.to_string()))
    .collect();
    assert_eq!(routes(&env), expected);
    let text = env.pcl(["status"]).run().success().stdout_str();
    assert!(text.lines().next().unwrap().contains("VIA"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.contains(VIA_PROXY_JUMP) && l.contains(" ssh ")),
        "{text}"
    );

    // px, with the shells' state kept, on every host.
    env.px(["cd /tmp && export X=kept"]).success();
    let out = env.px(["echo $PCL_HOST $PCL_ENGINE_ID $PWD $X"]).success();
    let lines: Vec<(u32, String)> = table
        .iter()
        .map(|(id, host)| (*id, format!("{host} {id} /tmp kept")))
        .collect();
    assert_eq!(px_stdout_lines(&out), lines, "{}", out.describe());
    env.px(["cd - >/dev/null"]).success();

    // push --file and pull --file, bytes intact both ways.
    let data = XorShift(17).bytes(8 << 20);
    let local = env.write("payload.bin", &data);
    env.pcl(["push", "--file", &local.to_string_lossy(), "payload.bin"])
        .timeout_secs(120)
        .run()
        .success();
    let out = env.px(["sha256sum < payload.bin"]).success();
    let sums = px_stdout_lines(&out);
    assert_eq!(sums.len(), 6, "{}", out.describe());
    let want = sha256_hex(&data);
    for (id, line) in &sums {
        assert!(line.starts_with(&want), "engine {id}: {line}");
    }
    env.px([
        "-t",
        VIA_PROXY_COMMAND,
        "head -c 3000000 payload.bin > back.bin",
    ])
    .success();
    let dest = env.path().join("pulled");
    std::fs::create_dir(&dest).unwrap();
    env.pcl([
        "pull",
        "-t",
        VIA_PROXY_COMMAND,
        "--file",
        "back.bin",
        "--dest",
        &dest.to_string_lossy(),
    ])
    .timeout_secs(60)
    .run()
    .success();
    assert_eq!(
        std::fs::read(dest.join("back.bin.5")).unwrap(),
        &data[..3_000_000]
    );

    // scatter and gather: blocks in engine order, whatever the path.
    let items: Vec<String> = (0..60).map(|i| format!("item{i}")).collect();
    let mut args = vec!["scatter".to_string(), "part".to_string()];
    args.extend(items.iter().cloned());
    env.pcl(&args).run().success();
    let gathered = env.pcl(["gather", "part"]).run().success().stdout_str();
    assert_eq!(gathered.lines().collect::<Vec<_>>(), items);

    // map: every item once, in input order.
    let out = env
        .pcl(["map", "echo {} $PCL_HOST", "--from", "-"])
        .stdin((0..200).map(|i| format!("{i}\n")).collect::<String>())
        .timeout_secs(60)
        .run()
        .success();
    let got: Vec<String> = out
        .stdout_str()
        .lines()
        .map(|l| l.split(' ').next().unwrap().to_string())
        .collect();
    assert_eq!(got, (0..200).map(|i| i.to_string()).collect::<Vec<_>>());
    for host in [VIA_PROXY_JUMP, VIA_PROXY_COMMAND] {
        assert!(out.stdout_str().contains(host), "a hidden host mapped too");
    }

    // Interrupt reaches a hidden engine's command like any other.
    let long = env.spawn(&["px", "-t", VIA_PROXY_JUMP, "sleep 300"]);
    std::thread::sleep(Duration::from_millis(800));
    env.pcl(["interrupt", "-t", VIA_PROXY_JUMP]).run().success();
    let (code, _, stderr, _) = finish(long, Duration::from_secs(20));
    assert_eq!(code, 130, "an interrupted sleep\n{stderr}");
    // And abort ends an async job there.
    let id = env
        .pcl(["px", "--async", "-t", VIA_PROXY_COMMAND, "sleep 300"])
        .run()
        .success()
        .stdout_str();
    let id = id.trim();
    env.pcl(["abort", id]).run().success();
    env.pcl(["wait", id])
        .timeout_secs(30)
        .run()
        .assert_exit(130);
    env.px(["-t", VIA_PROXY_COMMAND, "echo after"]).success();

    env.down();
    assert_nothing_left(&env.session);
    net.assert_hidden_clean(LEFTOVER_GRACE);
    net.hosts.assert_only_sshd_left();
}

#[test]
fn bastion_transport_keys_force_the_path_and_say_what_to_do() {
    let Some(net) = Bastion::new(1) else { return };
    let env = Env::new();
    // A direct host told to use the channel uses it; a hidden host told to
    // use UDP fails alone, and the error names the key that helps.
    let cluster = env.write_cluster(&[
        net.direct(1).raw("transport = \"ssh\""),
        net.hidden(VIA_PROXY_JUMP).raw("transport = \"quic\""),
    ]);
    let out = env
        .pcl(["up", &cluster.to_string_lossy()])
        .timeout_secs(90)
        .run()
        .failure();
    assert_eq!(
        parse_engine_table(&out),
        [(0, net.hosts.addr(1).to_string())]
    );
    assert!(
        out.stderr
            .lines()
            .any(|l| l.starts_with(&format!("pcl: host {VIA_PROXY_JUMP}: "))
                && l.contains("10.199.0.1:")
                && l.ends_with(
                    "(is UDP blocked? transport = \"ssh\" carries the session over ssh)"
                )),
        "{}",
        out.describe()
    );
    assert_eq!(
        routes(&env)[0],
        (net.hosts.addr(1).to_string(), "ssh".to_string())
    );
    // The engine host of a channel-only host listens on no UDP port.
    let listening = net
        .hosts
        .exec(1, ["ss", "-Hulnp"])
        .run()
        .success()
        .stdout_str();
    assert!(!listening.contains("pcl"), "{listening}");
    env.px(["-t", "0", "echo over ssh"]).success();

    env.down();
    assert_nothing_left(&env.session);
    net.assert_hidden_clean(LEFTOVER_GRACE);
    net.hosts.assert_only_sshd_left();
}

#[test]
fn bastion_killed_daemon_leaves_nothing_on_the_hidden_hosts() {
    let Some(net) = Bastion::new(1) else { return };
    let env = Env::new();
    let cluster = env.write_cluster(&[
        net.direct(1),
        net.hidden(VIA_PROXY_JUMP),
        net.hidden(VIA_PROXY_COMMAND),
    ]);
    env.up([&cluster]);
    env.px(["sleep 1000 & setsid sleep 1000 & echo started"])
        .success();
    for pid in daemon_pids(&env.session) {
        send_signal(pid, libc::SIGKILL);
    }
    net.assert_hidden_clean(Duration::from_secs(30));
    net.hosts.assert_only_sshd_left();
    assert_nothing_left(&env.session);
}

#[test]
fn bastion_cut_off_fails_only_the_hosts_behind_it() {
    let Some(net) = Bastion::new(1) else { return };
    let env = Env::new();
    let quick = ["link_timeout = 3", "reconnect_grace = 5"];
    let mut jump = net.hidden(VIA_PROXY_JUMP);
    let mut command = net.hidden(VIA_PROXY_COMMAND);
    for line in quick {
        jump = jump.raw(line);
        command = command.raw(line);
    }
    let cluster = env.write_cluster(&[net.direct(1).engines(2), jump, command]);
    env.up([&cluster]);
    env.px(["true"]).success();

    net.cut_bastion();
    let restore = BastionGuard(&net);
    let out = env.pcl(["px", "echo alive"]).timeout_secs(60).run();
    assert_eq!(out.code, Some(255), "{}", out.describe());
    let lines = px_stdout_lines(&out);
    assert_eq!(
        lines,
        [(0, "alive".to_string()), (1, "alive".to_string())],
        "the direct host answers\n{}",
        out.describe()
    );
    for id in [2, 3] {
        assert!(
            out.stderr.contains(&format!("engine {id}")),
            "engine {id} behind the bastion fails, named\n{}",
            out.describe()
        );
    }
    // Cut off from every session, the hidden engine hosts end everything.
    net.assert_hidden_clean(Duration::from_secs(40));
    env.px(["-t", net.hosts.addr(1), "echo still"]).success();
    drop(restore);
    env.down();
    assert_nothing_left(&env.session);
}

#[test]
fn bastion_a_blip_on_its_link_is_survived_with_the_shells_state() {
    let Some(net) = Bastion::new(1) else { return };
    let env = Env::new();
    let cluster = env.write_cluster(&[net
        .hidden(VIA_PROXY_JUMP)
        .raw("link_timeout = 2")
        .raw("reconnect_grace = 30")]);
    env.up([&cluster]);
    env.px(["kept=$$"]).success();
    let before = env.px(["echo $kept"]).success().stdout_str();

    // Longer than the link timeout, shorter than ssh's keep-alive window:
    // QUIC gives the connection up, the ssh channel stays.
    net.cut_bastion();
    let restore = BastionGuard(&net);
    std::thread::sleep(Duration::from_secs(4));
    drop(restore);
    let back = wait_until(Duration::from_secs(20), || {
        env.pcl(["px", "echo $kept"]).run().code == Some(0)
    });
    assert!(back, "the hidden host came back\n{}", env.logs());
    assert_eq!(env.px(["echo $kept"]).success().stdout_str(), before);
    assert!(env.logs().contains("reconnected"), "{}", env.logs());
    env.down();
    assert_nothing_left(&env.session);
    net.assert_hidden_clean(LEFTOVER_GRACE);
}

/// The bastion comes back even when the test fails, so that the
/// harness's cleanup can reach it.
struct BastionGuard<'a>(&'a Bastion);

impl Drop for BastionGuard<'_> {
    fn drop(&mut self) {
        self.0.restore_bastion();
    }
}
