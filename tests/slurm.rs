//! Engines on Slurm nodes, with a real Slurm: munged, slurmctld and one
//! slurmd per namespace host (see `common/slurm.rs`). Needs root,
//! iproute2, slurm-wlm and munge; skipped otherwise. The error cases at
//! the end need none of it.

mod common;

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

use common::slurm::Slurm;
use common::*;

/// `pcl ARGS` of `env`, with this Slurm's client configuration.
fn pcl(env: &Env, slurm: &Slurm, args: &[&str]) -> Cmd {
    let (key, value) = slurm.conf_env();
    env.pcl(args).env(key, value)
}

fn engine(status: &serde_json::Value, id: u32) -> serde_json::Value {
    status["engines"]
        .as_array()
        .expect("engines")
        .iter()
        .find(|e| e["id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("no engine {id} in {status}"))
}

fn table(pairs: &[(u32, &str)]) -> Vec<(u32, String)> {
    pairs.iter().map(|&(id, h)| (id, h.to_string())).collect()
}

#[test]
fn slurm_up_inside_salloc_runs_engines_on_its_nodes_and_down_leaves_nothing() {
    let Some(slurm) = Slurm::start(3) else {
        return;
    };
    let allocation = slurm.salloc(&["-N", "3", "--ntasks-per-node=2"]);
    let job = allocation.job();
    let env = Env::new();
    let out = allocation
        .inside(pcl(&env, &slurm, &["up", "--slurm"]))
        .run()
        .success();
    // Slurm's node names, in the job's order; engines per node = its tasks.
    let engines = parse_engine_table(&out);
    assert_eq!(
        engines,
        table(&[
            (0, "h1"),
            (1, "h1"),
            (2, "h2"),
            (3, "h2"),
            (4, "h3"),
            (5, "h3")
        ]),
        "{}",
        out.describe()
    );

    // Each engine runs on its node: in the node's namespace, in the job.
    let out = env
        .px(["echo $PCL_HOST $SLURMD_NODENAME $SLURM_JOB_ID $(hostname -I)"])
        .success();
    let got = px_stdout_lines(&out);
    assert_eq!(got.len(), 6, "{}", out.describe());
    for (id, text) in &got {
        let node = &engines[*id as usize].1;
        let index: usize = node[1..].parse::<usize>().unwrap() - 1;
        assert_eq!(
            text.trim(),
            format!("{node} {node} {job} {}", slurm.hosts().addr(index)),
            "{}",
            out.describe()
        );
    }
    // One step per node, each named after the session.
    let mut steps: Vec<String> = slurm.steps(&job).into_iter().map(|(_, n)| n).collect();
    steps.sort();
    assert_eq!(steps, ["h1", "h2", "h3"]);

    // Targets by Slurm node name.
    let out = env.px(["-t", "h[2-3]", "echo $PCL_HOST"]).success();
    assert_eq!(
        px_stdout_lines(&out),
        table(&[(2, "h2"), (3, "h2"), (4, "h3"), (5, "h3")]),
        "{}",
        out.describe()
    );

    // A file reaches every engine.
    let payload: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let local = env.write("payload.bin", &payload);
    env.pcl(["push", "--file"])
        .arg(&local)
        .arg("payload.bin")
        .run()
        .success();
    let out = env.px(["sha256sum < payload.bin | cut -c1-64"]).success();
    let sums = px_stdout_lines(&out);
    assert_eq!(sums.len(), 6, "{}", out.describe());
    assert!(
        sums.iter().all(|(_, s)| *s == sha256_hex(&payload)),
        "{}",
        out.describe()
    );

    // map spreads items over the nodes and keeps their order.
    let items: Vec<String> = (0..12).map(|i| format!("item{i}")).collect();
    let out = env
        .pcl(["map", "echo {} $PCL_HOST"])
        .args(&items)
        .run()
        .success();
    let lines = out.stdout_lines();
    assert_eq!(lines.len(), 12, "{}", out.describe());
    for (line, item) in lines.iter().zip(&items) {
        let (got, node) = line.split_once(' ').expect("item and node");
        assert_eq!(got, item, "{}", out.describe());
        assert!(["h1", "h2", "h3"].contains(&node), "{}", out.describe());
    }

    // status names the job.
    assert_eq!(env.status_json()["slurm_job"], job.as_str());
    env.pcl(["status"])
        .run()
        .success()
        .assert_stdout_contains(&format!("slurm job {job}"));

    env.down();
    assert_eq!(slurm.steps(&job), [], "no step of the session after down");
    assert_nothing_left(&env.session);
    slurm.assert_only_daemons_left();
    // The allocation is the user's own: pcl leaves it running.
    assert_eq!(slurm.state(&job).as_deref(), Some("RUNNING"));
}

#[test]
fn slurm_scancel_or_a_failed_node_marks_those_engines_dead_with_slurms_reason_and_the_others_go_on()
{
    let Some(slurm) = Slurm::start(3) else {
        return;
    };
    // --no-kill: the job outlives one of its nodes, as such jobs do.
    let allocation = slurm.salloc(&["-N", "3", "--no-kill"]);
    let job = allocation.job();
    let env = Env::new();
    let out = allocation
        .inside(pcl(&env, &slurm, &["up", "--slurm"]))
        .run()
        .success();
    assert_eq!(
        parse_engine_table(&out),
        table(&[(0, "h1"), (1, "h2"), (2, "h3")])
    );

    // Node h3 fails (as Slurm sees it: DOWN).
    slurm
        .cmd("scontrol")
        .args(["update", "nodename=h3", "state=down", "reason=pcltest"])
        .run()
        .success();
    let dead = wait_until(Duration::from_secs(20), || {
        engine(&env.status_json(), 2)["state"] == "dead"
    });
    let now = env.status_json();
    assert!(dead, "engine 2 not dead after its node failed: {now}");
    let reason = engine(&now, 2)["reason"].as_str().unwrap_or("").to_string();
    assert!(
        reason.contains("Node failure on h3"),
        "Slurm's words: {reason}"
    );

    // Cancel the step on h2 only.
    let (step, _) = slurm
        .steps(&job)
        .into_iter()
        .find(|(_, node)| node == "h2")
        .expect("a step on h2");
    slurm.cmd("scancel").arg(&step).run().success();
    let dead = wait_until(Duration::from_secs(20), || {
        engine(&env.status_json(), 1)["state"] == "dead"
    });
    let now = env.status_json();
    assert!(
        dead,
        "engine 1 not dead after its step was cancelled: {now}"
    );
    let reason = engine(&now, 1)["reason"].as_str().unwrap_or("").to_string();
    assert!(
        reason.contains(&format!("STEP {step} ON h2 CANCELLED")),
        "Slurm's words: {reason}"
    );
    assert_eq!(engine(&now, 0)["state"], "idle", "{now}");

    let out = env.px(["echo ok"]).assert_exit(255);
    assert_eq!(
        px_stdout_lines(&out),
        table(&[(0, "ok")]),
        "{}",
        out.describe()
    );
    out.assert_stderr_contains("CANCELLED");
    env.px(["-t", "h1", "true"]).success();

    // Cancel the whole job: the last engine goes too, saying so.
    slurm.cmd("scancel").arg(&job).run().success();
    let dead = wait_until(Duration::from_secs(20), || {
        engine(&env.status_json(), 0)["state"] == "dead"
    });
    let now = env.status_json();
    assert!(dead, "engine 0 not dead after its job was cancelled: {now}");
    let reason = engine(&now, 0)["reason"].as_str().unwrap_or("").to_string();
    assert!(reason.contains("CANCELLED"), "Slurm's words: {reason}");

    env.down();
    assert_nothing_left(&env.session);
    slurm.assert_only_daemons_left();
}

#[test]
fn slurm_table_waits_for_its_own_allocation_uses_it_and_releases_it_at_down() {
    let Some(slurm) = Slurm::start(2) else {
        return;
    };
    // Every node is taken: pcl's request must wait for this one to end.
    let blocker = slurm.salloc(&["-N", "2", "--exclusive"]);
    let env = Env::new();
    let cluster = env.write(
        "cluster.toml",
        "[slurm]\nnodes = 2\nengines = 2\ntime = \"10\"\n",
    );
    let name = format!("pcl-{}", env.session);
    let out = thread::scope(|scope| {
        let (slurm, name) = (&slurm, &name);
        scope.spawn(move || {
            let pending = wait_until(Duration::from_secs(60), || {
                slurm
                    .jobs_named(name)
                    .first()
                    .is_some_and(|job| slurm.state(job).as_deref() == Some("PENDING"))
            });
            // Long enough for `pcl up` to show the wait.
            thread::sleep(Duration::from_secs(2));
            blocker.release();
            assert!(pending, "pcl's job never showed as pending");
        });
        pcl(&env, slurm, &["up", &cluster.to_string_lossy()])
            .stderr_on_a_terminal()
            .timeout_secs(120)
            .run()
            .success()
    });
    assert_eq!(
        parse_engine_table(&out),
        table(&[(0, "h1"), (1, "h1"), (2, "h2"), (3, "h2")]),
        "{}",
        out.describe()
    );
    let job = env.status_json()["slurm_job"]
        .as_str()
        .expect("status names the job")
        .to_string();
    assert!(
        out.stderr
            .contains(&format!("waiting for Slurm: job {job} PENDING (Resources)")),
        "the wait was shown on the terminal\n{}",
        out.describe()
    );
    assert_eq!(slurm.jobs_named(&name), [job.as_str()]);
    assert_eq!(slurm.state(&job).as_deref(), Some("RUNNING"));

    let out = env.px(["echo $SLURM_JOB_ID $PCL_HOST"]).success();
    assert_eq!(
        px_stdout_lines(&out),
        table(&[
            (0, &format!("{job} h1")),
            (1, &format!("{job} h1")),
            (2, &format!("{job} h2")),
            (3, &format!("{job} h2")),
        ]),
        "{}",
        out.describe()
    );

    env.down();
    assert!(!slurm.listed(&job), "job {job} still queued after down");
    assert_nothing_left(&env.session);
    slurm.assert_only_daemons_left();
}

#[test]
fn slurm_killed_daemon_takes_its_steps_and_its_allocation_with_it() {
    let Some(slurm) = Slurm::start(2) else {
        return;
    };
    let env = Env::new();
    let cluster = env.write("cluster.toml", "[slurm]\nnodes = 2\n");
    pcl(&env, &slurm, &["up", &cluster.to_string_lossy()])
        .run()
        .success();
    let job = env.status_json()["slurm_job"]
        .as_str()
        .expect("status names the job")
        .to_string();
    assert_eq!(slurm.steps(&job).len(), 2);

    let daemons = daemon_pids(&env.session);
    assert_eq!(daemons.len(), 1, "one daemon");
    // SAFETY: killing the daemon this test started.
    unsafe {
        libc::kill(daemons[0], libc::SIGKILL);
    }
    let gone = wait_until(Duration::from_secs(30), || !slurm.listed(&job));
    assert!(gone, "job {job} still queued after its daemon was killed");
    assert_eq!(slurm.steps(&job), []);
    assert_nothing_left(&env.session);
    slurm.assert_only_daemons_left();
}

#[test]
fn slurm_refused_or_withdrawn_requests_say_so_and_leave_nothing_queued() {
    let Some(slurm) = Slurm::start(1) else {
        return;
    };
    let env = Env::new();
    let name = format!("pcl-{}", env.session);

    // Refused at once: Slurm's words, then what to do.
    let bad = env.write("bad.toml", "[slurm]\npartition = \"nosuch\"\n");
    let out = pcl(&env, &slurm, &["up", &bad.to_string_lossy()])
        .run()
        .assert_exit(1);
    out.assert_stderr_contains("invalid partition specified: nosuch")
        .assert_stderr_contains("what to do: name a partition that `sinfo -s` lists");
    assert_eq!(slurm.jobs_named(&name), Vec::<String>::new());
    assert_nothing_left(&env.session);

    // More nodes than there are: Slurm keeps it pending; Ctrl-C gives up
    // and takes the request back.
    let never = env.write("never.toml", "[slurm]\nnodes = 2\n");
    let (key, value) = slurm.conf_env();
    let child = Command::new(PCL)
        .args(["up", &never.to_string_lossy()])
        .env("HOME", env.home())
        .env("XDG_RUNTIME_DIR", env.runtime_dir())
        .env("PCL_SESSION", &env.session)
        .env(key, value)
        .current_dir(env.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("start pcl up");
    let queued = wait_until(Duration::from_secs(30), || {
        slurm
            .jobs_named(&name)
            .first()
            .is_some_and(|job| slurm.state(job).as_deref() == Some("PENDING"))
    });
    // SAFETY: interrupting the pcl this test started, as Ctrl-C would.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let (code, _, stderr, _) = finish(child, Duration::from_secs(30));
    assert!(queued, "the request never showed as pending");
    assert_eq!(code, 130, "{stderr}");
    assert!(stderr.contains("withdrawn"), "{stderr}");
    let withdrawn = wait_until(Duration::from_secs(10), || {
        slurm.jobs_named(&name).is_empty()
    });
    assert!(withdrawn, "the request is still queued");
    assert_nothing_left(&env.session);
}

#[test]
fn slurm_hosts_table_takes_the_named_nodes_of_the_allocation_and_restart_starts_a_new_step() {
    let Some(slurm) = Slurm::start(2) else {
        return;
    };
    let allocation = slurm.salloc(&["-N", "2"]);
    let job = allocation.job();
    let env = Env::new();
    let cluster = env.write(
        "cluster.toml",
        "[[hosts]]\nlauncher = \"slurm\"\nhost = \"h2\"\nengines = 3\n\
         setup = \"greeting=hello\"\n\n[[hosts]]\nhost = \"localhost\"\nlauncher = \"local\"\n",
    );
    let out = allocation
        .inside(pcl(&env, &slurm, &["up", &cluster.to_string_lossy()]))
        .run()
        .success();
    assert_eq!(
        parse_engine_table(&out),
        table(&[(0, "h2"), (1, "h2"), (2, "h2"), (3, "localhost")]),
        "{}",
        out.describe()
    );
    let out = env
        .px(["-t", "h2", "echo $greeting $SLURMD_NODENAME"])
        .success();
    assert_eq!(
        px_stdout_lines(&out),
        table(&[(0, "hello h2"), (1, "hello h2"), (2, "hello h2")]),
        "{}",
        out.describe()
    );
    assert_eq!(slurm.steps(&job).len(), 1, "one step, on h2");

    // The engine host dies: its step ends, and restart makes a new one.
    let (step, _) = slurm.steps(&job).remove(0);
    let victims: Vec<i32> = engine_pids(&env.session)
        .into_iter()
        .filter(|&pid| netns_of(pid) == slurm.hosts().hosts()[1].netns)
        .collect();
    assert_eq!(victims.len(), 1, "one engine host on h2");
    // SAFETY: killing the engine host this test's session started.
    unsafe {
        libc::kill(victims[0], libc::SIGKILL);
    }
    let dead = wait_until(Duration::from_secs(20), || {
        engine(&env.status_json(), 0)["state"] == "dead"
    });
    assert!(dead, "engine 0 not dead: {}", env.status_json());
    let out = env.pcl(["restart"]).run().success();
    assert_eq!(
        parse_engine_table(&out),
        table(&[(0, "h2"), (1, "h2"), (2, "h2")]),
        "{}",
        out.describe()
    );
    let steps = slurm.steps(&job);
    assert_eq!(steps.len(), 1, "{steps:?}");
    assert_ne!(steps[0].0, step, "a new step");
    env.px(["-t", "h2", "true"]).success();

    env.down();
    assert_eq!(slurm.steps(&job), []);
    assert_nothing_left(&env.session);
    slurm.assert_only_daemons_left();
}

#[test]
fn slurm_harness_removes_everything_it_started_also_on_panic() {
    let footprint = std::panic::catch_unwind(|| {
        let Some(slurm) = Slurm::start(1) else {
            return;
        };
        let footprint = slurm.footprint();
        std::panic::panic_any(footprint);
    });
    let footprint = match footprint {
        // Skipped: Slurm could not start here.
        Ok(()) => return,
        Err(payload) => *payload
            .downcast::<(Vec<i32>, Vec<std::path::PathBuf>, Vec<String>)>()
            .expect("the footprint"),
    };
    let (pids, places, namespaces) = footprint;
    assert_eq!(pids.len(), 3, "munged, slurmctld, one slurmd");
    for pid in pids {
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let alive = !state.is_empty() && !state.contains(") Z ");
        assert!(!alive, "pid {pid} still running: {state}");
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    for place in places {
        assert!(!place.exists(), "{} left behind", place.display());
        assert!(
            !mounts.contains(&*place.to_string_lossy()),
            "{} still mounted",
            place.display()
        );
    }
    let left = netns_list();
    assert!(namespaces.iter().all(|ns| !left.contains(ns)), "{left:?}");
}

/// Needs no Slurm: these are refused before anything starts.
#[test]
fn slurm_errors_outside_an_allocation_or_without_srun_say_what_to_do() {
    let env = Env::new();
    let outside = |cmd: Cmd| {
        cmd.env_remove("SLURM_JOB_ID")
            .env_remove("SLURM_JOBID")
            .env_remove("SLURM_JOB_NODELIST")
    };
    outside(env.pcl(["up", "--slurm"]))
        .run()
        .assert_exit(1)
        .assert_stderr_contains("not inside a Slurm allocation (SLURM_JOB_ID is not set)")
        .assert_stderr_contains("what to do: run `pcl up --slurm` inside `salloc`");

    let slurm_hosts = env.write("hosts.toml", "[[hosts]]\nlauncher = \"slurm\"\n");
    outside(env.pcl(["up"]).arg(&slurm_hosts))
        .run()
        .assert_exit(1)
        .assert_stderr_contains("not inside a Slurm allocation");

    let plain = env.write(
        "plain.toml",
        "[[hosts]]\nhost = \"localhost\"\nlauncher = \"local\"\n",
    );
    env.pcl(["up", "--slurm"])
        .arg(&plain)
        .run()
        .assert_exit(1)
        .assert_stderr_contains("--slurm with a cluster file needs Slurm nodes in it");

    let empty_path = env.path().join("bin");
    std::fs::create_dir_all(&empty_path).unwrap();
    env.pcl(["up", "--slurm"])
        .env("PATH", &empty_path)
        .env("SLURM_JOB_ID", "1")
        .env("SLURM_JOB_NODELIST", "n[1-2]")
        .run()
        .assert_exit(1)
        .assert_stderr_contains("`srun` is not on PATH")
        .assert_stderr_contains("module load slurm");

    env.pcl(["up", "--slurm"])
        .env("SLURM_JOB_ID", "1")
        .env_remove("SLURM_JOB_NODELIST")
        .env_remove("SLURM_NODELIST")
        .run()
        .assert_exit(1)
        .assert_stderr_contains("SLURM_JOB_NODELIST is not set");
    assert_nothing_left(&env.session);
}
