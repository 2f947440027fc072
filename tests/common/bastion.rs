//! Hosts only ssh can reach: namespace hosts on a second bridge that only
//! the bastion (namespace host 0) also sits on. The test machine has no
//! route to them; the ssh config reaches one with `ProxyJump bastion` and
//! one with `ProxyCommand ssh -W %h:%p bastion`.

use super::*;

/// The hidden subnet lives only inside the bastion's namespace, so it can
/// never meet another test's subnet on the test machine.
const HIDDEN_SUBNET: &str = "10.199.0";

/// Host names of the hidden hosts, as the ssh config knows them.
pub const VIA_PROXY_JUMP: &str = "hidden-jump";
pub const VIA_PROXY_COMMAND: &str = "hidden-cmd";

struct HiddenHost {
    netns: String,
    sshd: Option<Child>,
    log: PathBuf,
}

/// Namespace hosts 1.. reachable directly, host 0 the bastion, and two
/// hidden hosts behind it: `hidden-jump` and `hidden-cmd`.
pub struct Bastion {
    /// Host 0 is the bastion.
    pub hosts: NetnsHosts,
    hidden: Vec<HiddenHost>,
    ssh_config: PathBuf,
}

impl Bastion {
    /// The bastion, `direct` hosts the test machine reaches, and the two
    /// hidden hosts. `None` (skipped) where namespaces cannot be made.
    pub fn new(direct: usize) -> Option<Bastion> {
        let hosts = NetnsHosts::new(direct + 1)?;
        let mut me = Bastion {
            hosts,
            hidden: Vec::new(),
            ssh_config: PathBuf::new(),
        };
        if let Err(e) = me.setup() {
            drop(me);
            panic!("setting up the bastion's hidden hosts failed: {e}");
        }
        Some(me)
    }

    fn setup(&mut self) -> Result<(), String> {
        let tag = self.hosts.tag().to_string();
        let bastion = self.hosts.hosts()[0].netns.clone();
        let bridge = "inner";
        sh(
            "ip",
            &["-n", &bastion, "link", "add", bridge, "type", "bridge"],
        )?;
        sh(
            "ip",
            &[
                "-n",
                &bastion,
                "addr",
                "add",
                &format!("{HIDDEN_SUBNET}.254/24"),
                "dev",
                bridge,
            ],
        )?;
        sh("ip", &["-n", &bastion, "link", "set", bridge, "up"])?;
        for i in 0..2 {
            let netns = format!("pcl-{tag}-x{i}");
            let veth = format!("{tag}x{i}");
            let peer = format!("{tag}y{i}");
            let _ = sh("ip", &["netns", "del", &netns]);
            sh("ip", &["netns", "add", &netns])?;
            self.hidden.push(HiddenHost {
                netns: netns.clone(),
                sshd: None,
                log: self.hosts.dir().join(format!("sshd-x{i}.log")),
            });
            sh(
                "ip",
                &["link", "add", &veth, "type", "veth", "peer", "name", &peer],
            )?;
            sh("ip", &["link", "set", &veth, "netns", &bastion])?;
            sh("ip", &["link", "set", &peer, "netns", &netns])?;
            sh(
                "ip",
                &["-n", &bastion, "link", "set", &veth, "master", bridge],
            )?;
            sh("ip", &["-n", &bastion, "link", "set", &veth, "up"])?;
            sh("ip", &["-n", &netns, "link", "set", &peer, "name", "eth0"])?;
            let addr = format!("{HIDDEN_SUBNET}.{}/24", i + 1);
            sh("ip", &["-n", &netns, "addr", "add", &addr, "dev", "eth0"])?;
            sh("ip", &["-n", &netns, "link", "set", "eth0", "up"])?;
            sh("ip", &["-n", &netns, "link", "set", "lo", "up"])?;

            let home = self.hosts.dir().join(format!("home-x{i}"));
            fs::create_dir_all(&home).map_err(|e| e.to_string())?;
            let cfg = self.hosts.dir().join(format!("sshd_config-x{i}"));
            write_sshd_config(&cfg, 22, None, self.hosts.keys(), &home, "")?;
            self.hidden[i].sshd = Some(spawn_sshd_in(&netns, &cfg, &self.hidden[i].log)?);
        }

        // Specific hosts first: ssh keeps the first value it reads.
        let base = fs::read_to_string(self.hosts.ssh_config()).map_err(|e| e.to_string())?;
        self.ssh_config = self.hosts.dir().join("ssh_config_bastion");
        let config = format!(
            "Host bastion\n  HostName {bastion_addr}\n\
             Host {VIA_PROXY_JUMP}\n  HostName {HIDDEN_SUBNET}.1\n  ProxyJump bastion\n\
             Host {VIA_PROXY_COMMAND}\n  ProxyCommand ssh -F {config} -W {HIDDEN_SUBNET}.2:%p bastion\n\
             {base}",
            bastion_addr = self.hosts.addr(0),
            config = self.ssh_config.display(),
        );
        fs::write(&self.ssh_config, config).map_err(|e| e.to_string())?;

        // The hidden sshds are up once ssh gets through the bastion.
        for name in [VIA_PROXY_JUMP, VIA_PROXY_COMMAND] {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let out = self.ssh(name, "true").run();
                if out.code == Some(0) {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(format!("no ssh to {name}: {}", out.describe()));
                }
                thread::sleep(Duration::from_millis(100));
            }
        }
        Ok(())
    }

    /// `["-F", "<the config that knows the bastion>"]`.
    pub fn ssh_options(&self) -> Vec<String> {
        vec!["-F".into(), self.ssh_config.to_string_lossy().into_owned()]
    }

    /// A cluster-file entry for direct host `i` (1..), by its address.
    pub fn direct(&self, i: usize) -> Host {
        assert!(i >= 1, "host 0 is the bastion");
        Host::ssh(self.hosts.addr(i), self.ssh_options())
    }

    /// A cluster-file entry for a hidden host, by its ssh config name.
    pub fn hidden(&self, name: &str) -> Host {
        Host::ssh(name, self.ssh_options())
    }

    /// `ssh -F <config> NAME COMMAND`.
    pub fn ssh(&self, name: &str, command: &str) -> Cmd {
        ssh_cmd(&self.ssh_config, name, command)
    }

    /// Fail unless, on both hidden hosts, only sshd is left within
    /// `within`: its listener, and the processes of connections whose far
    /// end is cut off (sshd's to end, when TCP gives up on them).
    #[track_caller]
    pub fn assert_hidden_clean(&self, within: Duration) {
        let left = || -> Vec<String> {
            let mut left = Vec::new();
            for (i, host) in self.hidden.iter().enumerate() {
                for pid in netns_pids(&self.hidden[i].netns)
                    .into_iter()
                    .filter(|&pid| !is_sshd(pid))
                {
                    left.push(format!(
                        "  {} pid {pid}: {}",
                        host.netns,
                        read_argv(pid).join(" ")
                    ));
                }
            }
            left
        };
        if !wait_until(within, || left().is_empty()) {
            panic!(
                "processes left on the hidden hosts after {within:?}:\n{}",
                left().join("\n")
            );
        }
    }

    /// Cut the bastion off the test machine's bridge.
    pub fn cut_bastion(&self) {
        self.hosts.link_down(0);
    }

    pub fn restore_bastion(&self) {
        self.hosts.link_up(0);
    }
}

impl Drop for Bastion {
    fn drop(&mut self) {
        let panicking = thread::panicking();
        for i in 0..self.hidden.len() {
            if panicking {
                eprintln!(
                    "sshd log of {}:\n{}",
                    self.hidden[i].netns,
                    tail(
                        &fs::read_to_string(&self.hidden[i].log).unwrap_or_default(),
                        30
                    )
                );
            }
            let pids = netns_pids(&self.hidden[i].netns);
            if let Some(child) = self.hidden[i].sshd.as_mut() {
                stop_child(child);
            }
            for pid in pids {
                send_signal(pid, libc::SIGKILL);
            }
            // Its link goes with the namespace.
            let _ = sh("ip", &["netns", "del", &self.hidden[i].netns]);
        }
    }
}
