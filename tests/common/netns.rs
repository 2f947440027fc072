//! Network namespaces behind a bridge, one sshd each: several hosts on one machine.

use super::*;

/// One namespace host of [`NetnsHosts`].
pub struct NsHost {
    /// Network namespace name (`ip netns exec NAME ...`).
    pub netns: String,
    /// Root-namespace end of the veth pair (attached to the bridge).
    pub veth: String,
    /// The host's IPv4 address.
    pub addr: String,
    /// HOME of ssh sessions on this host.
    pub home: PathBuf,
    sshd: Option<Child>,
    log: PathBuf,
}

/// n network namespaces behind one bridge, each with its own address and
/// sshd on port 22: n "hosts" on one machine.
pub struct NetnsHosts {
    dir: tempfile::TempDir,
    bridge: String,
    bridge_created: bool,
    subnet: String,
    hosts: Vec<NsHost>,
    ssh_config: PathBuf,
    /// What this instance's names start with.
    tag: String,
    keys: Option<SshKeys>,
}

/// Subnets are 10.X.Y.0/24 with X in 200..=254.
pub(crate) const SUBNETS: usize = 55 * 256;

pub(crate) fn subnet_prefix(index: usize) -> String {
    format!("10.{}.{}", 200 + index / 256, index % 256)
}

pub(crate) struct FileLock(fs::File);

impl FileLock {
    fn acquire(path: &str) -> io::Result<FileLock> {
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)?;
        use std::os::fd::AsRawFd;
        // SAFETY: flock on a file descriptor we own.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(FileLock(f))
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        use std::os::fd::AsRawFd;
        // SAFETY: unlocking our own descriptor.
        unsafe {
            libc::flock(self.0.as_raw_fd(), libc::LOCK_UN);
        }
    }
}

impl NetnsHosts {
    /// Create `n` namespace hosts. `None` (after printing
    /// `SKIPPED: needs root and iproute2`) when not root, iproute2 is
    /// missing, sshd is missing, or namespaces cannot be created here.
    pub fn new(n: usize) -> Option<NetnsHosts> {
        assert!((1..=200).contains(&n), "1..=200 namespace hosts");
        if !is_root() || find_program("ip", &["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip"]).is_none()
        {
            skip("needs root and iproute2");
            return None;
        }
        if let Err(why) = ssh_tools_present() {
            skip(&format!("needs root and iproute2 and sshd: {why}"));
            return None;
        }

        let pid = std::process::id();
        let tag = format!("p{pid:x}{:02x}", next_id() % 256);
        let dir = temp_dir("pcln");
        let mut me = NetnsHosts {
            dir,
            bridge: format!("{tag}br"),
            bridge_created: false,
            subnet: String::new(),
            hosts: Vec::new(),
            ssh_config: PathBuf::new(),
            tag: tag.clone(),
            keys: None,
        };
        // Names embed our pid: anything with them is a leftover of a dead
        // process that had the same pid. Remove it.
        let _ = sh("ip", &["link", "del", &me.bridge]);
        for i in 0..n {
            let _ = sh("ip", &["netns", "del", &format!("pcl-{tag}-{i}")]);
            let _ = sh("ip", &["link", "del", &format!("{tag}h{i:x}")]);
        }

        if let Err(e) = me.setup(&tag, n) {
            if me.bridge_created || !me.hosts.is_empty() {
                // We could create things, so this is a real failure.
                drop(me);
                panic!("setting up network namespaces failed: {e}");
            }
            skip(&format!("cannot create network namespaces here: {e}"));
            return None;
        }
        Some(me)
    }

    fn setup(&mut self, tag: &str, n: usize) -> Result<(), String> {
        // Pick a free /24 and claim it (bridge + address) under a lock, so
        // that concurrently running test processes never share a subnet.
        {
            let _lock = FileLock::acquire("/tmp/pcl-test-netns.lock").map_err(|e| e.to_string())?;
            let used = sh("ip", &["-o", "-4", "addr", "show"])?
                + &sh("ip", &["-4", "route", "show", "table", "all"]).unwrap_or_default();
            let start = (std::process::id() as usize * 16 + next_id()) % SUBNETS;
            let prefix = (0..SUBNETS)
                .map(|k| subnet_prefix((start + k) % SUBNETS))
                .find(|p| !used.contains(&format!("{p}.")))
                .ok_or("no free 10.2xx.y.0/24 subnet")?;
            sh("ip", &["link", "add", &self.bridge, "type", "bridge"])?;
            self.bridge_created = true;
            sh(
                "ip",
                &[
                    "addr",
                    "add",
                    &format!("{prefix}.254/24"),
                    "dev",
                    &self.bridge,
                ],
            )?;
            sh("ip", &["link", "set", &self.bridge, "up"])?;
            self.subnet = prefix;
        }

        let keys = self.keys.insert(make_keys(self.dir.path())?);
        self.ssh_config = self.dir.path().join("ssh_config");
        write_ssh_client_config(&self.ssh_config, 22, keys)?;

        for i in 0..n {
            let netns = format!("pcl-{tag}-{i}");
            let veth = format!("{tag}h{i:x}");
            let peer = format!("{tag}n{i:x}");
            let addr = format!("{}.{}", self.subnet, i + 1);
            let home = self.dir.path().join(format!("home{i}"));
            fs::create_dir_all(&home).map_err(|e| e.to_string())?;
            sh("ip", &["netns", "add", &netns])?;
            self.hosts.push(NsHost {
                netns: netns.clone(),
                veth: veth.clone(),
                addr: addr.clone(),
                home: home.clone(),
                sshd: None,
                log: self.dir.path().join(format!("sshd{i}.log")),
            });
            sh(
                "ip",
                &["link", "add", &veth, "type", "veth", "peer", "name", &peer],
            )?;
            sh("ip", &["link", "set", &peer, "netns", &netns])?;
            sh("ip", &["link", "set", &veth, "master", &self.bridge])?;
            sh("ip", &["link", "set", &veth, "up"])?;
            sh("ip", &["-n", &netns, "link", "set", &peer, "name", "eth0"])?;
            sh(
                "ip",
                &[
                    "-n",
                    &netns,
                    "addr",
                    "add",
                    &format!("{addr}/24"),
                    "dev",
                    "eth0",
                ],
            )?;
            sh("ip", &["-n", &netns, "link", "set", "eth0", "up"])?;
            sh("ip", &["-n", &netns, "link", "set", "lo", "up"])?;

            let cfg = self.dir.path().join(format!("sshd_config{i}"));
            write_sshd_config(&cfg, 22, None, self.keys.as_ref().expect("keys"), &home, "")?;
            self.hosts[i].sshd = Some(spawn_sshd_in(&netns, &cfg, &self.hosts[i].log)?);
        }
        for h in &mut self.hosts {
            let addr: SocketAddr = format!("{}:22", h.addr).parse().expect("socket addr");
            let child = h.sshd.as_mut().expect("sshd started");
            wait_for_ssh_banner(addr, child, Duration::from_secs(15)).map_err(|e| {
                format!(
                    "{} ({}): {e}\n--- sshd log ---\n{}",
                    h.netns,
                    h.addr,
                    fs::read_to_string(&h.log).unwrap_or_default()
                )
            })?;
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    pub fn hosts(&self) -> &[NsHost] {
        &self.hosts
    }

    /// The temp dir everything of these hosts lives in.
    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// What the names of this instance's namespaces and links start with.
    pub(crate) fn tag(&self) -> &str {
        &self.tag
    }

    /// The host and user keys every sshd of these hosts takes.
    pub(crate) fn keys(&self) -> &SshKeys {
        self.keys.as_ref().expect("keys made at setup")
    }

    /// The hosts' IPv4 addresses, in order.
    pub fn addrs(&self) -> Vec<String> {
        self.hosts.iter().map(|h| h.addr.clone()).collect()
    }

    pub fn addr(&self, i: usize) -> &str {
        &self.hosts[i].addr
    }

    /// The bridge's address (the root namespace, where the daemon runs).
    pub fn gateway(&self) -> String {
        format!("{}.254", self.subnet)
    }

    pub fn ssh_config(&self) -> &Path {
        &self.ssh_config
    }

    /// `["-F", "<tmp>/ssh_config"]` (port 22, the harness's key).
    pub fn ssh_options(&self) -> Vec<String> {
        vec!["-F".into(), self.ssh_config.to_string_lossy().into_owned()]
    }

    /// A cluster-file host entry for host `i` (its IP).
    pub fn host(&self, i: usize) -> Host {
        Host::ssh(&self.hosts[i].addr, self.ssh_options())
    }

    /// `ssh -F <config> <addr of i> COMMAND`.
    pub fn ssh(&self, i: usize, command: &str) -> Cmd {
        ssh_cmd(&self.ssh_config, &self.hosts[i].addr, command)
    }

    /// `ip netns exec <ns of i> ARGV...`.
    pub fn exec<I, S>(&self, i: usize, argv: I) -> Cmd
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Cmd::new("ip")
            .args(["netns", "exec", &self.hosts[i].netns])
            .args(argv)
            .timeout_secs(30)
    }

    /// Take host `i`'s link down (its veth end on the bridge).
    pub fn link_down(&self, i: usize) {
        sh("ip", &["link", "set", &self.hosts[i].veth, "down"]).unwrap_or_else(|e| panic!("{e}"));
    }

    /// Bring host `i`'s link back up.
    pub fn link_up(&self, i: usize) {
        sh("ip", &["link", "set", &self.hosts[i].veth, "up"]).unwrap_or_else(|e| panic!("{e}"));
    }

    /// Bytes the root namespace has sent through the bridge so far: what
    /// left the daemon's machine for the hosts, whichever host got it.
    pub fn bridge_tx_bytes(&self) -> u64 {
        let path = format!("/sys/class/net/{}/statistics/tx_bytes", self.bridge);
        fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{path}: {e}"))
            .trim()
            .parse()
            .expect("a byte count")
    }

    /// Limit host `i`'s link to `rate` (a tc rate, `40mbit`) both ways.
    pub fn shape(&self, i: usize, rate: &str) {
        let tbf = [
            "root", "tbf", "rate", rate, "burst", "64kbit", "latency", "400ms",
        ];
        sh(
            "tc",
            &[&["qdisc", "add", "dev", &self.hosts[i].veth][..], &tbf].concat(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let netns = &self.hosts[i].netns;
        let inside = [&["-n", netns, "qdisc", "add", "dev", "eth0"][..], &tbf].concat();
        sh("tc", &inside).unwrap_or_else(|e| panic!("{e}"));
    }

    /// Drop all traffic between host `i` and host `j` (in both
    /// namespaces, a blackhole route to the other), as a firewall between
    /// them would; both still reach the bridge, where the daemon runs.
    pub fn separate(&self, i: usize, j: usize) {
        for (from, to) in [(i, j), (j, i)] {
            let target = format!("{}/32", self.hosts[to].addr);
            let netns = &self.hosts[from].netns;
            sh("ip", &["-n", netns, "route", "add", "blackhole", &target])
                .unwrap_or_else(|e| panic!("{e}"));
        }
    }

    /// Pid of host `i`'s sshd listener.
    pub fn sshd_pid(&self, i: usize) -> i32 {
        self.hosts[i]
            .sshd
            .as_ref()
            .map(|c| c.id() as i32)
            .unwrap_or(-1)
    }

    /// Pids of all processes in host `i`'s namespace (`ip netns pids`).
    pub fn pids_in(&self, i: usize) -> Vec<i32> {
        netns_pids(&self.hosts[i].netns)
    }

    /// Fail unless, in every namespace, only the sshd listener is left
    /// (after a grace period): no engine, shell, or ssh session.
    #[track_caller]
    pub fn assert_only_sshd_left(&self) {
        self.assert_left_only(|_| false);
    }

    /// As `assert_only_sshd_left`, but sshd's processes of connections
    /// whose link was cut may stay too: TCP ends them in its own time.
    #[track_caller]
    pub fn assert_only_sshd_processes_left(&self) {
        self.assert_left_only(is_sshd);
    }

    #[track_caller]
    fn assert_left_only(&self, allowed: impl Fn(i32) -> bool) {
        let deadline = Instant::now() + LEFTOVER_GRACE;
        loop {
            let mut extra = Vec::new();
            for i in 0..self.len() {
                let sshd = self.sshd_pid(i);
                for pid in self.pids_in(i) {
                    if pid != sshd && !allowed(pid) {
                        extra.push(format!(
                            "  {} pid {pid}: {}",
                            self.hosts[i].netns,
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
                    "processes left in the namespaces after {LEFTOVER_GRACE:?}:\n{}",
                    extra.join("\n")
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// sshd log of host `i`.
    pub fn log(&self, i: usize) -> String {
        fs::read_to_string(&self.hosts[i].log).unwrap_or_default()
    }

    /// Names of the interfaces and namespaces this instance owns (for the
    /// harness self-test).
    pub fn resource_names(&self) -> (String, Vec<String>, Vec<String>) {
        (
            self.bridge.clone(),
            self.hosts.iter().map(|h| h.netns.clone()).collect(),
            self.hosts.iter().map(|h| h.veth.clone()).collect(),
        )
    }
}

impl Drop for NetnsHosts {
    fn drop(&mut self) {
        let panicking = thread::panicking();
        for i in 0..self.hosts.len() {
            if panicking {
                eprintln!(
                    "sshd log of {} ({}):\n{}",
                    self.hosts[i].netns,
                    self.hosts[i].addr,
                    tail(&self.log(i), 30)
                );
            }
            // Everything in the namespace, the sshd included, must go:
            // a process keeps its namespace alive.
            let pids = self.pids_in(i);
            if let Some(child) = self.hosts[i].sshd.as_mut() {
                stop_child(child);
            }
            for pid in pids {
                send_signal(pid, libc::SIGKILL);
            }
        }
        for h in &self.hosts {
            let _ = sh("ip", &["netns", "del", &h.netns]);
            let _ = sh("ip", &["link", "del", &h.veth]);
        }
        if self.bridge_created {
            let _ = sh("ip", &["link", "del", &self.bridge]);
        }
    }
}

/// sshd in namespace `netns`, logging to `log`.
pub(crate) fn spawn_sshd_in(netns: &str, config: &Path, log: &Path) -> Result<Child, String> {
    let logf = fs::File::create(log).map_err(|e| e.to_string())?;
    Command::new("ip")
        .args(["netns", "exec", netns, SSHD, "-D", "-e", "-f"])
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(logf)
        .spawn()
        .map_err(|e| format!("start sshd in {netns}: {e}"))
}

/// Whether `pid` is sshd itself or one of its sshd-session processes.
pub(crate) fn is_sshd(pid: i32) -> bool {
    proc_exe(pid)
        .and_then(|exe| exe.file_name().map(|n| n.to_string_lossy().into_owned()))
        .is_some_and(|name| name.starts_with("sshd"))
}

/// Live (not zombie) processes in namespace `netns` (`ip netns pids`).
pub(crate) fn netns_pids(netns: &str) -> Vec<i32> {
    sh("ip", &["netns", "pids", netns])
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .filter(|&p| read_stat(p).is_some_and(|(s, _)| s != 'Z'))
        .collect()
}

/// All namespace names currently present (`ip netns list`).
pub fn netns_list() -> BTreeSet<String> {
    sh("ip", &["netns", "list"])
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

/// Whether a network interface with this name exists in the root namespace.
pub fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}
