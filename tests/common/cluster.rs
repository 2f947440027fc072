//! Cluster files for the local launcher, the loopback sshd and namespace hosts.

use super::*;

/// One `[[hosts]]` entry of a cluster file.
#[derive(Clone, Debug)]
pub struct Host {
    pub host: String,
    pub launcher: Option<String>,
    pub engines: Option<usize>,
    pub port: Option<u16>,
    pub user: Option<String>,
    pub ssh_options: Vec<String>,
    pub engine_path: Option<PathBuf>,
    pub workdir: Option<String>,
    /// Extra raw TOML lines (`key = value`) for this entry.
    pub extra: Vec<String>,
}

impl Host {
    fn bare(host: &str) -> Host {
        Host {
            host: host.to_string(),
            launcher: None,
            engines: None,
            port: None,
            user: None,
            ssh_options: Vec::new(),
            engine_path: None,
            workdir: None,
            extra: Vec::new(),
        }
    }

    /// `engines` local engines: `host = "localhost"`, `launcher = "local"`.
    pub fn local(engines: usize) -> Host {
        let mut h = Host::bare("localhost");
        h.launcher = Some("local".into());
        h.engines = Some(engines);
        h
    }

    /// A host reached over ssh with these ssh options; `engine_path` is set
    /// to the binary under test (see [`Host::no_engine_path`]).
    pub fn ssh(host: &str, ssh_options: Vec<String>) -> Host {
        let mut h = Host::bare(host);
        h.ssh_options = ssh_options;
        h.engine_path = Some(PathBuf::from(PCL));
        h
    }

    pub fn engines(mut self, n: usize) -> Host {
        self.engines = Some(n);
        self
    }

    pub fn port(mut self, port: u16) -> Host {
        self.port = Some(port);
        self
    }

    pub fn user(mut self, user: &str) -> Host {
        self.user = Some(user.into());
        self
    }

    pub fn workdir(mut self, dir: &str) -> Host {
        self.workdir = Some(dir.into());
        self
    }

    /// Leave `engine_path` unset: pcl must bootstrap itself on the host.
    pub fn no_engine_path(mut self) -> Host {
        self.engine_path = None;
        self
    }

    pub fn raw(mut self, line: &str) -> Host {
        self.extra.push(line.into());
        self
    }
}

pub(crate) fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// The cluster file text for these hosts.
pub fn cluster_toml(hosts: &[Host]) -> String {
    let mut s = String::new();
    for h in hosts {
        s.push_str("[[hosts]]\n");
        let _ = writeln!(s, "host = {}", toml_str(&h.host));
        if let Some(l) = &h.launcher {
            let _ = writeln!(s, "launcher = {}", toml_str(l));
        }
        if let Some(n) = h.engines {
            let _ = writeln!(s, "engines = {n}");
        }
        if let Some(p) = h.port {
            let _ = writeln!(s, "port = {p}");
        }
        if let Some(u) = &h.user {
            let _ = writeln!(s, "user = {}", toml_str(u));
        }
        if !h.ssh_options.is_empty() {
            let opts: Vec<String> = h.ssh_options.iter().map(|o| toml_str(o)).collect();
            let _ = writeln!(s, "ssh_options = [{}]", opts.join(", "));
        }
        if let Some(p) = &h.engine_path {
            let _ = writeln!(s, "engine_path = {}", toml_str(&p.to_string_lossy()));
        }
        if let Some(w) = &h.workdir {
            let _ = writeln!(s, "workdir = {}", toml_str(w));
        }
        for line in &h.extra {
            let _ = writeln!(s, "{line}");
        }
        s.push('\n');
    }
    s
}

/// `n` local hosts of one engine each, every one with its own workdir
/// (`w0`, `w1`, ... in the env), like separate machines.
pub fn separate_hosts(env: &Env, n: usize, extra: &[&str]) -> (PathBuf, Vec<PathBuf>) {
    let dirs: Vec<PathBuf> = (0..n).map(|i| env.path().join(format!("w{i}"))).collect();
    let hosts: Vec<Host> = dirs
        .iter()
        .enumerate()
        .map(|(i, dir)| {
            let mut h = Host::local(1).workdir(&dir.to_string_lossy());
            h.host = format!("h{i}");
            for line in extra {
                h = h.raw(line);
            }
            h
        })
        .collect();
    (env.write_cluster(&hosts), dirs)
}
