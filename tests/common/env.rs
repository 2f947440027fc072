//! An isolated world per test: its HOME, runtime directory and session.

use super::*;

/// An isolated world for one test: its own HOME, XDG_RUNTIME_DIR and
/// session name. Dropping it stops the session.
pub struct Env {
    dir: tempfile::TempDir,
    /// The session name all `pcl` calls of this env use (`PCL_SESSION`).
    pub session: String,
    other_sessions: std::sync::Mutex<Vec<String>>,
}

impl Default for Env {
    fn default() -> Self {
        Self::new()
    }
}

impl Env {
    /// A new world whose session name is derived from the test name.
    pub fn new() -> Env {
        Self::named(&test_name())
    }

    /// A new world with a session name derived from `label`.
    pub fn named(label: &str) -> Env {
        let dir = temp_dir("pclt");
        let mut label = sanitize(label);
        label.truncate(24);
        let label = label.trim_matches('-').to_string();
        let session = format!("{label}-{}-{}", std::process::id(), next_id());
        let env = Env {
            dir,
            session,
            other_sessions: Default::default(),
        };
        for d in [env.home(), env.runtime_dir()] {
            fs::create_dir_all(&d).expect("create dir");
            fs::set_permissions(&d, fs::Permissions::from_mode(0o700)).expect("chmod");
        }
        env
    }

    /// The temp dir that holds everything of this env.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `HOME` for pcl and for local engines.
    pub fn home(&self) -> PathBuf {
        self.path().join("home")
    }

    /// `XDG_RUNTIME_DIR` for pcl (the session socket lives below it).
    pub fn runtime_dir(&self) -> PathBuf {
        self.path().join("run")
    }

    /// Run any program with this env's environment (HOME, XDG_RUNTIME_DIR,
    /// PCL_SESSION; other PCL_* variables removed).
    pub fn cmd(&self, program: impl AsRef<OsStr>) -> Cmd {
        let mut cmd = Cmd::new(program)
            .env("HOME", self.home())
            .env("XDG_RUNTIME_DIR", self.runtime_dir())
            .env("PCL_SESSION", &self.session)
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("XDG_STATE_HOME")
            .env_remove("XDG_CACHE_HOME")
            .env_remove("XDG_DATA_HOME")
            .env_remove("SSH_AUTH_SOCK")
            .current_dir(self.path());
        cmd.clear_pcl_env = true;
        cmd.log_dirs = vec![self.runtime_dir(), self.home().join(".local/state")];
        cmd
    }

    /// The real pcl binary with `args`, e.g. `env.pcl(["px", "hostname"]).run()`.
    pub fn pcl<I, S>(&self, args: I) -> Cmd
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.cmd(PCL).args(args)
    }

    /// `pcl px ARGS...` (shortcut).
    pub fn px<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.pcl(
            std::iter::once(OsString::from("px"))
                .chain(args.into_iter().map(|a| a.as_ref().to_owned())),
        )
        .run()
    }

    /// `pcl status --json`, parsed.
    pub fn status_json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.pcl(["status", "--json"]).run().success().stdout)
            .expect("status --json")
    }

    /// `pcl up ARGS...`, asserting success; returns the printed engine
    /// table as (id, host) pairs.
    #[track_caller]
    pub fn up<I, S>(&self, args: I) -> Vec<(u32, String)>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let out = self
            .pcl(
                std::iter::once(OsString::from("up"))
                    .chain(args.into_iter().map(|a| a.as_ref().to_owned())),
            )
            .run()
            .success();
        parse_engine_table(&out)
    }

    /// A pcl command of this env running in the background, for tests
    /// that act while it runs (Ctrl-C, kills); see `finish`.
    pub fn spawn(&self, args: &[&str]) -> Child {
        self.spawn_with_stdin(args, Stdio::null())
    }

    /// As `spawn`, with stdin from `stdin` (`Stdio::piped()` to feed it).
    pub fn spawn_with_stdin(&self, args: &[&str], stdin: Stdio) -> Child {
        Command::new(PCL)
            .args(args)
            .env("HOME", self.home())
            .env("XDG_RUNTIME_DIR", self.runtime_dir())
            .env("PCL_SESSION", &self.session)
            .current_dir(self.path())
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start pcl")
    }

    /// `pcl down`, then nothing of the session may be left anywhere, and
    /// only sshd in each namespace host.
    pub fn down_leaving_nothing(&self, hosts: &NetnsHosts) {
        self.down();
        assert_nothing_left(&self.session);
        hosts.assert_only_sshd_left();
    }

    /// `pcl down`, asserting success.
    #[track_caller]
    pub fn down(&self) -> Output {
        self.pcl(["down"]).run().success()
    }

    /// Write `contents` to `name` inside the env's dir.
    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path().join(name);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).expect("create dir");
        }
        fs::write(&p, contents).expect("write file");
        p
    }

    /// Write a cluster file with these hosts; returns its path.
    pub fn write_cluster(&self, hosts: &[Host]) -> PathBuf {
        self.write("cluster.toml", cluster_toml(hosts))
    }

    /// (a) `engines` local engines on host "localhost".
    pub fn cluster_local(&self, engines: usize) -> PathBuf {
        self.write_cluster(&[Host::local(engines)])
    }

    /// (b) `engines` engines on the loopback sshd (host `127.0.0.1`).
    /// `engine_path`: run `CARGO_BIN_EXE_pcl` there; `false` exercises
    /// the zero-install bootstrap.
    pub fn cluster_sshd(&self, sshd: &Sshd, engines: usize, engine_path: bool) -> PathBuf {
        let mut h = sshd.host().engines(engines);
        if !engine_path {
            h = h.no_engine_path();
        }
        self.write_cluster(&[h])
    }

    /// (c) `engines` engines on each namespace host.
    pub fn cluster_netns(&self, hosts: &NetnsHosts, engines: usize) -> PathBuf {
        let hs: Vec<Host> = (0..hosts.len())
            .map(|i| hosts.host(i).engines(engines))
            .collect();
        self.write_cluster(&hs)
    }

    /// Another session name for this env (`<session>-<suffix>`), for tests
    /// that run several sessions; it is stopped and cleaned up on drop too.
    pub fn other_session(&self, suffix: &str) -> String {
        let name = format!("{}-{suffix}", self.session);
        self.other_sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(name.clone());
        name
    }

    fn cleanup_session(&self, name: &str) {
        // Best effort: stop the session, then kill whatever is left.
        let _ = self
            .pcl(["down", "--session", name])
            .timeout_secs(30)
            .execute();
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let left = session_processes(name);
            if left.is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                eprintln!(
                    "harness: killing processes of session {name} left after `pcl down`:\n{}",
                    format_procs(&left)
                );
                for p in &left {
                    send_signal(p.pid, libc::SIGKILL);
                }
                break;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// The session's daemon log(s), if any.
    pub fn logs(&self) -> String {
        collect_logs(&[self.runtime_dir(), self.home().join(".local/state")])
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if thread::panicking() {
            let logs = self.logs();
            if !logs.is_empty() {
                eprintln!("session {} logs:\n{logs}", self.session);
            }
        }
        let others = std::mem::take(
            &mut *self
                .other_sessions
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        for name in others.iter().chain(std::iter::once(&self.session)) {
            self.cleanup_session(name);
        }
    }
}

/// Engine `id`'s state in a `pcl status --json` ("idle", "busy", ...).
pub fn engine_state(v: &serde_json::Value, id: u32) -> String {
    v["engines"]
        .as_array()
        .expect("engines")
        .iter()
        .find(|e| e["id"] == id)
        .and_then(|e| e["state"].as_str())
        .unwrap_or("missing")
        .to_string()
}

/// The ids in `up`'s table of the engines on `host`.
pub fn engines_on(table: &[(u32, String)], host: &str) -> Vec<u32> {
    table
        .iter()
        .filter(|(_, h)| h == host)
        .map(|(id, _)| *id)
        .collect()
}

/// The ids in `up`'s table of the engines on every other host.
pub fn engines_off(table: &[(u32, String)], host: &str) -> Vec<u32> {
    table
        .iter()
        .filter(|(_, h)| h != host)
        .map(|(id, _)| *id)
        .collect()
}

/// Parse `pcl up`'s table: one `<id> <host>` line per engine.
#[track_caller]
pub fn parse_engine_table(out: &Output) -> Vec<(u32, String)> {
    let mut table = Vec::new();
    for line in out.stdout_str().lines() {
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let id = fields.first().and_then(|f| f.parse::<u32>().ok());
        match (id, fields.len()) {
            (Some(id), 2) => table.push((id, fields[1].to_string())),
            _ => out.fail(&format!("not an `<id> <host>` line: {line:?}")),
        }
    }
    table
}
