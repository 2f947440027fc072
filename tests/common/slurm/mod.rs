//! A real Slurm for tests: Debian's munged, slurmctld and one slurmd per
//! namespace host of a [`NetnsHosts`], each instance with its own config,
//! munge key and socket, state and spool directories and controller port,
//! so tests (and test binaries) running at once never share one. Nodes
//! are named `h1`..`hN` (`NodeAddr` = the namespace hosts' addresses).
//!
//! Client commands find this instance through `SLURM_CONF`: run them with
//! [`Slurm::cmd`], or add [`Slurm::conf_env`] to a pcl command. Needs
//! root, iproute2, `slurm-wlm` and `munge`; without them [`Slurm::start`]
//! prints `SKIPPED` (a failure under `PCL_TEST_REQUIRE=1`), as it does
//! when the daemons cannot start here. Everything is stopped and removed
//! on drop, also when the test panics.

use std::fs;
use std::io::Read;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

pub mod allocation;

use super::{
    Cmd, LEFTOVER_GRACE, NetnsHosts, find_program, is_root, read_argv, sh, skip, stop_child, tail,
    temp_dir,
};

/// Programs the harness runs, and the packages that bring them.
const PROGRAMS: [(&str, &str); 8] = [
    ("munged", "munge"),
    ("slurmctld", "slurmctld"),
    ("slurmd", "slurmd"),
    ("srun", "slurm-client"),
    ("salloc", "slurm-client"),
    ("squeue", "slurm-client"),
    ("scontrol", "slurm-client"),
    ("scancel", "slurm-client"),
];

/// How long the daemons get to come up: slurmd registers within seconds.
const START_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Slurm {
    dir: tempfile::TempDir,
    conf: PathBuf,
    munged: Option<Child>,
    slurmctld: Option<Child>,
    slurmds: Vec<Child>,
    /// The machine's cgroup tree, bound outside /sys for the namespaces
    /// (outside `dir`, which is removed recursively).
    cgroup: Option<PathBuf>,
    /// Declared last: dropped after the daemons that run in it.
    hosts: NetnsHosts,
}

impl Slurm {
    /// Start Slurm on `n` namespace hosts, `None` (after `SKIPPED`) where
    /// it cannot run.
    pub fn start(n: usize) -> Option<Slurm> {
        if !is_root() {
            skip("Slurm tests need root");
            return None;
        }
        let sbin = ["/usr/sbin", "/usr/bin"];
        for (program, package) in PROGRAMS {
            let candidates: Vec<String> = sbin.iter().map(|d| format!("{d}/{program}")).collect();
            let candidates: Vec<&str> = candidates.iter().map(String::as_str).collect();
            if find_program(program, &candidates).is_none() {
                skip(&format!(
                    "needs Slurm: {program} is missing (apt-get install slurm-wlm munge; \
                     {package})"
                ));
                return None;
            }
        }
        let hosts = NetnsHosts::new(n)?;
        let dir = temp_dir("pcls");
        let mut me = Slurm {
            conf: dir.path().join("slurm.conf"),
            dir,
            munged: None,
            slurmctld: None,
            slurmds: Vec::new(),
            cgroup: None,
            hosts,
        };
        if let Err(why) = me.setup() {
            let logs = me.logs();
            drop(me);
            skip(&format!("Slurm did not start here: {why}\n{logs}"));
            return None;
        }
        Some(me)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn setup(&mut self) -> Result<(), String> {
        fs::set_permissions(self.dir.path(), fs::Permissions::from_mode(0o700))
            .map_err(|e| e.to_string())?;
        self.start_munged()?;
        self.write_conf()?;
        self.start_slurmctld()?;
        self.bind_cgroup()?;
        for i in 0..self.hosts.len() {
            self.start_slurmd(i)?;
        }
        self.wait_for_idle_nodes()
    }

    fn start_munged(&mut self) -> Result<(), String> {
        let key = self.path("munge.key");
        let mut bytes = vec![0u8; 1024];
        fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut bytes))
            .map_err(|e| e.to_string())?;
        fs::write(&key, &bytes).map_err(|e| e.to_string())?;
        fs::set_permissions(&key, fs::Permissions::from_mode(0o400)).map_err(|e| e.to_string())?;
        let socket = self.path("munge.sock");
        let log = fs::File::create(self.path("munged.out")).map_err(|e| e.to_string())?;
        let child = Command::new("munged")
            .args(["--foreground", "--force"])
            .arg(format!("--key-file={}", key.display()))
            .arg(format!("--socket={}", socket.display()))
            .arg(format!("--pid-file={}", self.path("munged.pid").display()))
            .arg(format!("--log-file={}", self.path("munged.log").display()))
            .arg(format!(
                "--seed-file={}",
                self.path("munged.seed").display()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("munged: {e}"))?;
        self.munged = Some(child);
        wait_for(START_TIMEOUT, "munged's socket", || socket.exists())
    }

    fn write_conf(&self) -> Result<(), String> {
        let gateway = self.hosts.gateway();
        let port = TcpListener::bind((gateway.as_str(), 0))
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("a free port on {gateway}: {e}"))?
            .port();
        let controller = sh("hostname", &["-s"])?.trim().to_string();
        let d = self.dir.path().display();
        let n = self.hosts.len();
        let addrs = self.hosts.addrs().join(",");
        // Engines' steps run beside the user's (--overlap); task/none and
        // linuxproc need nothing of the namespaces but the cgroup tree.
        let conf = format!(
            "ClusterName=pcltest{port}\n\
             SlurmctldHost={controller}({gateway})\n\
             SlurmctldPort={port}\n\
             SlurmdPort=6818\n\
             AuthType=auth/munge\n\
             AuthInfo=socket={d}/munge.sock\n\
             CredType=cred/munge\n\
             SlurmUser=root\n\
             SlurmdUser=root\n\
             StateSaveLocation={d}/state\n\
             SlurmdSpoolDir={d}/spool-%n\n\
             SlurmctldPidFile={d}/slurmctld.pid\n\
             SlurmdPidFile={d}/slurmd-%n.pid\n\
             SlurmctldLogFile={d}/slurmctld.log\n\
             SlurmdLogFile={d}/slurmd-%n.log\n\
             ProctrackType=proctrack/linuxproc\n\
             TaskPlugin=task/none\n\
             SelectType=select/cons_tres\n\
             SelectTypeParameters=CR_Core\n\
             MpiDefault=none\n\
             ReturnToService=2\n\
             KillWait=5\n\
             SlurmdParameters=config_overrides\n\
             NodeName=h[1-{n}] NodeAddr={addrs} CPUs=2 State=UNKNOWN\n\
             PartitionName=main Nodes=h[1-{n}] Default=YES MaxTime=INFINITE State=UP\n"
        );
        fs::create_dir_all(self.path("state")).map_err(|e| e.to_string())?;
        fs::write(&self.conf, conf).map_err(|e| e.to_string())
    }

    fn start_slurmctld(&mut self) -> Result<(), String> {
        let out = fs::File::create(self.path("slurmctld.out")).map_err(|e| e.to_string())?;
        let child = Command::new("slurmctld")
            .args(["-D", "-i", "-f"])
            .arg(&self.conf)
            .env("SLURM_CONF", &self.conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .map_err(|e| format!("slurmctld: {e}"))?;
        self.slurmctld = Some(child);
        let conf = self.conf.clone();
        wait_for(START_TIMEOUT, "slurmctld to answer", || {
            Command::new("scontrol")
                .arg("ping")
                .env("SLURM_CONF", &conf)
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("is UP"))
        })
    }

    /// `ip netns exec` gives each namespace a fresh /sys without the
    /// cgroup tree slurmd needs: bind the tree outside /sys first, then
    /// onto /sys/fs/cgroup inside (`start_slurmd`).
    fn bind_cgroup(&mut self) -> Result<(), String> {
        // A directory of its own, never removed recursively: while bound,
        // it holds the machine's cgroups.
        let place = temp_dir("pclc").keep();
        self.cgroup = Some(place.clone());
        let place = place.to_string_lossy();
        sh("mount", &["--rbind", "/sys/fs/cgroup", &place])?;
        // Keep our unmount from reaching the machine's own tree.
        sh("mount", &["--make-rslave", &place])?;
        Ok(())
    }

    fn start_slurmd(&mut self, i: usize) -> Result<(), String> {
        let cgroup = self.cgroup.clone().expect("cgroup bound");
        let out =
            fs::File::create(self.path(&format!("slurmd{i}.out"))).map_err(|e| e.to_string())?;
        let script = format!(
            "mount --rbind '{}' /sys/fs/cgroup && exec slurmd -D -f '{}' -N h{}",
            cgroup.display(),
            self.conf.display(),
            i + 1
        );
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.hosts.hosts()[i].netns,
                "sh",
                "-c",
                &script,
            ])
            .env("SLURM_CONF", &self.conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .map_err(|e| format!("slurmd in {}: {e}", self.hosts.hosts()[i].netns))?;
        self.slurmds.push(child);
        Ok(())
    }

    fn wait_for_idle_nodes(&mut self) -> Result<(), String> {
        let n = self.hosts.len();
        let started = Instant::now();
        loop {
            let states = self.sinfo_states();
            if states.len() == n && states.iter().all(|s| s == "idle") {
                return Ok(());
            }
            for (i, child) in self.slurmds.iter_mut().enumerate() {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(format!("slurmd h{} exited ({status})", i + 1));
                }
            }
            if started.elapsed() > START_TIMEOUT {
                return Err(format!(
                    "nodes not idle after {START_TIMEOUT:?}: {states:?}"
                ));
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    fn sinfo_states(&self) -> Vec<String> {
        self.cmd("sinfo")
            .args(["-h", "-N", "-o", "%T"])
            .execute()
            .map(|o| o.stdout_lines())
            .unwrap_or_default()
    }

    /// The namespace hosts the nodes run on (node `h{i+1}` is host `i`).
    pub fn hosts(&self) -> &NetnsHosts {
        &self.hosts
    }

    /// The node names, in order.
    pub fn nodes(&self) -> Vec<String> {
        (1..=self.hosts.len()).map(|i| format!("h{i}")).collect()
    }

    /// `("SLURM_CONF", path)`, for commands that talk to this Slurm.
    pub fn conf_env(&self) -> (&'static str, &Path) {
        ("SLURM_CONF", &self.conf)
    }

    /// A Slurm client command (`squeue`, `scancel`, ...) of this instance.
    pub fn cmd(&self, program: &str) -> Cmd {
        Cmd::new(program)
            .env("SLURM_CONF", &self.conf)
            .timeout_secs(30)
    }

    /// Job ids of this user's jobs named `name` that squeue still lists.
    pub fn jobs_named(&self, name: &str) -> Vec<String> {
        self.cmd("squeue")
            .args(["--me", "-h", "-n", name, "-o", "%i"])
            .run()
            .success()
            .stdout_lines()
    }

    /// Whether squeue still lists job `job` (pending, running, completing).
    pub fn listed(&self, job: &str) -> bool {
        self.cmd("squeue")
            .args(["-h", "-j", job, "-o", "%T"])
            .execute()
            .is_ok_and(|o| o.status() == Some(0) && !o.stdout_str().trim().is_empty())
    }

    /// The job's state as squeue shows it (`PENDING`, `RUNNING`), if listed.
    pub fn state(&self, job: &str) -> Option<String> {
        let out = self
            .cmd("squeue")
            .args(["-h", "-j", job, "-o", "%T"])
            .execute()
            .ok()?;
        out.stdout_lines().into_iter().next()
    }

    /// The job's steps as (step id, node).
    pub fn steps(&self, job: &str) -> Vec<(String, String)> {
        self.cmd("squeue")
            .args(["-s", "-h", "-j", job, "-o", "%i %N"])
            .execute()
            .map(|o| {
                o.stdout_lines()
                    .iter()
                    .filter_map(|l| {
                        let (step, node) = l.trim().split_once(' ')?;
                        Some((step.to_string(), node.trim().to_string()))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Fail unless, in every namespace host, only sshd and slurmd are
    /// left (after a grace): no engine, shell, step or slurmstepd.
    #[track_caller]
    pub fn assert_only_daemons_left(&self) {
        let daemons: Vec<i32> = self.slurmds.iter().map(|c| c.id() as i32).collect();
        let deadline = Instant::now() + LEFTOVER_GRACE;
        loop {
            let mut extra = Vec::new();
            for i in 0..self.hosts.len() {
                let sshd = self.hosts.sshd_pid(i);
                for pid in self.hosts.pids_in(i) {
                    if pid != sshd && !daemons.contains(&pid) {
                        extra.push(format!(
                            "  h{} pid {pid}: {}",
                            i + 1,
                            read_argv(pid).join(" ")
                        ));
                    }
                }
            }
            if extra.is_empty() {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "processes left on the Slurm nodes after {LEFTOVER_GRACE:?}:\n{}",
                    extra.join("\n")
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Pids of munged, slurmctld and the slurmds (for the harness's own
    /// test), and the places it made: its directory, the cgroup mount
    /// point and the namespaces.
    pub fn footprint(&self) -> (Vec<i32>, Vec<PathBuf>, Vec<String>) {
        let pids = self
            .munged
            .iter()
            .chain(&self.slurmctld)
            .chain(&self.slurmds)
            .map(|child| child.id() as i32)
            .collect();
        let places = std::iter::once(self.dir.path().to_path_buf())
            .chain(self.cgroup.clone())
            .collect();
        let namespaces = self.hosts.hosts().iter().map(|h| h.netns.clone()).collect();
        (pids, places, namespaces)
    }

    /// The daemons' logs, for failures.
    pub fn logs(&self) -> String {
        let mut files: Vec<PathBuf> = fs::read_dir(self.dir.path())
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        files.retain(|p| p.extension().is_some_and(|e| e == "log" || e == "out"));
        files.sort();
        files
            .iter()
            .map(|p| {
                format!(
                    "--- {} ---\n{}",
                    p.file_name().unwrap_or_default().to_string_lossy(),
                    tail(&fs::read_to_string(p).unwrap_or_default(), 15)
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Slurm {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("Slurm logs:\n{}", self.logs());
        }
        for child in &mut self.slurmds {
            stop_child(child);
        }
        if let Some(child) = self.slurmctld.as_mut() {
            stop_child(child);
        }
        if let Some(child) = self.munged.as_mut() {
            stop_child(child);
        }
        if let Some(place) = &self.cgroup {
            let _ = sh("umount", &["-R", "-l", &place.to_string_lossy()]);
            // Removes only an empty directory: one still bound stays.
            let _ = fs::remove_dir(place);
        }
    }
}

fn wait_for(timeout: Duration, what: &str, mut ready: impl FnMut() -> bool) -> Result<(), String> {
    let started = Instant::now();
    while !ready() {
        if started.elapsed() > timeout {
            return Err(format!("no {what} after {timeout:?}"));
        }
        thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}
