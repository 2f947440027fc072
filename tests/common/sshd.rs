//! A real OpenSSH server on a loopback port, with its own keys and client config.

use super::*;

pub(crate) struct SshKeys {
    host_key: PathBuf,
    user_key: PathBuf,
    authorized_keys: PathBuf,
}

pub(crate) fn ssh_tools_present() -> Result<(), String> {
    if !Path::new(SSHD).is_file() {
        return Err(format!(
            "{SSHD} not installed (apt-get install openssh-server)"
        ));
    }
    for tool in ["ssh", "ssh-keygen"] {
        if find_program(tool, &[]).is_none() {
            return Err(format!(
                "{tool} not installed (apt-get install openssh-client)"
            ));
        }
    }
    Ok(())
}

pub(crate) fn make_keys(dir: &Path) -> Result<SshKeys, String> {
    let host_key = dir.join("host_ed25519");
    let user_key = dir.join("id_ed25519");
    for k in [&host_key, &user_key] {
        sh(
            "ssh-keygen",
            &[
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                "pcl-test",
                "-f",
                &k.to_string_lossy(),
            ],
        )?;
    }
    let authorized_keys = dir.join("authorized_keys");
    let pubkey = fs::read(user_key.with_extension("pub")).map_err(|e| e.to_string())?;
    fs::write(&authorized_keys, pubkey).map_err(|e| e.to_string())?;
    if is_root() {
        // sshd's privilege separation directory.
        fs::create_dir_all("/run/sshd").map_err(|e| format!("/run/sshd: {e}"))?;
    }
    Ok(SshKeys {
        host_key,
        user_key,
        authorized_keys,
    })
}

pub(crate) fn write_sshd_config(
    path: &Path,
    port: u16,
    listen: Option<&str>,
    keys: &SshKeys,
    home: &Path,
    first: &str,
) -> Result<(), String> {
    // `first` overrides the settings below: they are left out where it
    // names the same keyword (for some keywords sshd keeps the first
    // value it reads, for others the last).
    let mut s = String::from(first);
    let overridden: Vec<String> = first
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_ascii_lowercase)
        .collect();
    let _ = writeln!(s, "Port {port}");
    if let Some(addr) = listen {
        let _ = writeln!(s, "ListenAddress {addr}");
    }
    let _ = writeln!(s, "HostKey {}", keys.host_key.display());
    let _ = writeln!(s, "AuthorizedKeysFile {}", keys.authorized_keys.display());
    let defaults = "StrictModes no\n\
         UsePAM no\n\
         PidFile none\n\
         PubkeyAuthentication yes\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         X11Forwarding no\n\
         PrintMotd no\n\
         PrintLastLog no\n\
         UseDNS no\n\
         MaxStartups 200\n\
         MaxSessions 200\n\
         LogLevel VERBOSE\n\
         Subsystem sftp internal-sftp\n";
    for line in defaults.lines() {
        let keyword = line.split_whitespace().next().unwrap_or("");
        if !overridden.contains(&keyword.to_ascii_lowercase()) {
            s.push_str(line);
            s.push('\n');
        }
    }
    if is_root() {
        s.push_str("PermitRootLogin prohibit-password\n");
    }
    // The remote side gets its own HOME inside the temp dir, so that the
    // bootstrap cache (~/.cache/pcl) and default workdirs never touch the
    // real home directory.
    let _ = writeln!(s, "SetEnv HOME={}", home.display());
    fs::write(path, s).map_err(|e| e.to_string())
}

pub(crate) fn write_ssh_client_config(
    path: &Path,
    port: u16,
    keys: &SshKeys,
) -> Result<(), String> {
    let s = format!(
        "Host *\n\
         \x20 IdentityFile {}\n\
         \x20 Port {port}\n\
         \x20 User {}\n\
         \x20 UserKnownHostsFile /dev/null\n\
         \x20 GlobalKnownHostsFile /dev/null\n\
         \x20 StrictHostKeyChecking no\n\
         \x20 LogLevel ERROR\n\
         \x20 BatchMode yes\n\
         \x20 IdentitiesOnly yes\n\
         \x20 ConnectTimeout 10\n",
        keys.user_key.display(),
        current_user(),
    );
    fs::write(path, s).map_err(|e| e.to_string())
}

/// Wait until `addr` accepts TCP connections and greets with an SSH banner.
pub(crate) fn wait_for_ssh_banner(
    addr: SocketAddr,
    child: &mut Child,
    timeout: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("sshd exited early ({status})"));
        }
        if let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let mut buf = [0u8; 4];
            if s.read_exact(&mut buf).is_ok() && &buf == b"SSH-" {
                return Ok(());
            }
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "sshd did not accept connections on {addr} within {timeout:?}"
            ));
        }
        thread::sleep(Duration::from_millis(30));
    }
}

pub(crate) fn free_loopback_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind a free loopback port")
}

/// A port on 127.0.0.1 where nothing listens (connections are refused).
pub fn closed_port() -> u16 {
    free_loopback_port()
}

pub(crate) fn ssh_cmd(config: &Path, host: &str, command: &str) -> Cmd {
    Cmd::new("ssh")
        .arg("-F")
        .arg(config)
        .arg(host)
        .arg(command)
        .timeout_secs(30)
}

// ---------------------------------------------------------------------------
// Sshd
// ---------------------------------------------------------------------------

/// A real sshd on a free loopback port (`127.0.0.1`), with its own host key,
/// a user key pair and a client config.
pub struct Sshd {
    dir: tempfile::TempDir,
    child: Child,
    port: u16,
    ssh_config: PathBuf,
    log: PathBuf,
    remote_home: PathBuf,
}

impl Sshd {
    /// Start it; `None` (after printing `SKIPPED: ...`) when sshd is not
    /// installed.
    pub fn start() -> Option<Sshd> {
        Self::start_with("")
    }

    /// Like [`Sshd::start`], with `config_first` (sshd_config lines) read
    /// before the harness's own settings, so it overrides them: e.g.
    /// `"MaxStartups 10:30:100\n"` for sshd's default connection limit.
    pub fn start_with(config_first: &str) -> Option<Sshd> {
        if let Err(why) = ssh_tools_present() {
            skip(&why);
            return None;
        }
        let dir = temp_dir("pcls");
        let keys = make_keys(dir.path()).unwrap_or_else(|e| panic!("ssh keys: {e}"));
        let remote_home = dir.path().join("home");
        fs::create_dir_all(&remote_home).expect("create remote home");
        let sshd_config = dir.path().join("sshd_config");
        let ssh_config = dir.path().join("ssh_config");
        let log = dir.path().join("sshd.log");
        let mut last_err = String::new();
        for _attempt in 0..5 {
            let port = free_loopback_port();
            write_sshd_config(
                &sshd_config,
                port,
                Some("127.0.0.1"),
                &keys,
                &remote_home,
                config_first,
            )
            .expect("write sshd_config");
            write_ssh_client_config(&ssh_config, port, &keys).expect("write ssh_config");
            let logf = fs::File::create(&log).expect("create sshd log");
            let mut child = Command::new(SSHD)
                .arg("-D")
                .arg("-e")
                .arg("-f")
                .arg(&sshd_config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(logf)
                .spawn()
                .unwrap_or_else(|e| panic!("start {SSHD}: {e}"));
            let addr: SocketAddr = ([127, 0, 0, 1], port).into();
            match wait_for_ssh_banner(addr, &mut child, Duration::from_secs(10)) {
                Ok(()) => {
                    return Some(Sshd {
                        dir,
                        child,
                        port,
                        ssh_config,
                        log,
                        remote_home,
                    });
                }
                Err(e) => {
                    stop_child(&mut child);
                    last_err = format!(
                        "{e}\n--- sshd log ---\n{}",
                        fs::read_to_string(&log).unwrap_or_default()
                    );
                }
            }
        }
        panic!("could not start sshd: {last_err}");
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// The client config (`ssh -F` it).
    pub fn ssh_config(&self) -> &Path {
        &self.ssh_config
    }

    /// `["-F", "<tmp>/ssh_config"]`, for `ssh_options` in a cluster file.
    pub fn ssh_options(&self) -> Vec<String> {
        vec!["-F".into(), self.ssh_config.to_string_lossy().into_owned()]
    }

    /// `HOME` of sessions on this server (a dir in the temp dir).
    pub fn remote_home(&self) -> &Path {
        &self.remote_home
    }

    /// A cluster-file host entry for this server (`127.0.0.1`).
    pub fn host(&self) -> Host {
        Host::ssh("127.0.0.1", self.ssh_options())
    }

    /// `ssh -F <config> 127.0.0.1 COMMAND`.
    pub fn ssh(&self, command: &str) -> Cmd {
        ssh_cmd(&self.ssh_config, "127.0.0.1", command)
    }

    /// sshd's own log (stderr, `-e`).
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Live per-connection sshd processes (children of the listener).
    pub fn connections(&self) -> Vec<i32> {
        children_of(self.pid())
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!(
                "sshd log ({}):\n{}",
                self.log.display(),
                tail(&self.log(), 40)
            );
        }
        let conns = self.connections();
        stop_child(&mut self.child);
        for pid in conns {
            send_signal(pid, libc::SIGKILL);
        }
    }
}
