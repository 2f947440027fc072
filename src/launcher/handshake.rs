use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use super::bootstrap::{BOOT_PREFIX, answer};
use super::slurm::{srun_hint, why_step_ended};
use super::{LaunchError, Launcher, LocalLauncher, SlurmLauncher, Spawned, SshLauncher};
use crate::config::{HostSpec, LauncherKind};
use crate::protocol::engine::{EngineHostConfig, HANDSHAKE_PREFIX};
use crate::transport::Channel;

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);
/// Enough of an engine host's stderr to explain a failure.
const STDERR_KEPT: usize = 16 << 10;
/// The last lines of an engine host's stderr, kept for the words a
/// launcher prints as the process ends (srun's, on a cancelled step).
const STDERR_TAIL_LINES: usize = 8;
/// How long an exited engine host's stderr may take to reach its end.
const STDERR_DRAIN: Duration = Duration::from_secs(5);

/// A running engine host, greeted and ready for a QUIC connection.
pub(crate) struct EngineHostProcess {
    pub child: Child,
    /// The process's stdin and stdout, which carry QUIC's datagrams when
    /// the session goes over the channel. Closing it is the tether: the
    /// engine host exits.
    pub channel: Channel,
    /// Its UDP port, seen from the daemon; else why there is none.
    pub udp: Result<SocketAddr, String>,
    pub fingerprint: String,
    /// Says why the process ended, once it has.
    pub exit: ExitNote,
}

/// An engine host's stderr as far as a failure needs it: its beginning
/// (why it did not start) and its last lines (why it ended).
#[derive(Default)]
struct StderrKept {
    head: String,
    tail: VecDeque<String>,
}

/// What is needed to say why an engine host's local process ended.
pub(crate) struct ExitNote {
    /// The Slurm job of the node's step, whose end Slurm explains.
    slurm_job: Option<String>,
    stderr: Arc<Mutex<StderrKept>>,
    drained: Option<JoinHandle<()>>,
}

impl ExitNote {
    /// Why the process ended; `how` is its exit status as text.
    pub(crate) async fn explain(self, how: &str) -> String {
        let Some(job) = self.slurm_job else {
            return format!("engine host exited ({how})");
        };
        // srun prints Slurm's reason as it exits.
        if let Some(drained) = self.drained {
            let _ = tokio::time::timeout(STDERR_DRAIN, drained).await;
        }
        let tail: Vec<String> = self
            .stderr
            .lock()
            .expect("stderr buffer lock")
            .tail
            .iter()
            .cloned()
            .collect();
        why_step_ended(&job, &tail, how).await
    }
}

/// SSH connections being set up at once, as pdsh's default fanout: more
/// would only run into sshd's MaxStartups.
const SSH_FANOUT: usize = 32;
/// sshd's MaxStartups drops at random (30% of new connections from 10
/// unauthenticated ones on, by default), so a busy host can lose several
/// draws in a row: ten tries, the pause capped, is about 20 s at worst.
const SSH_ATTEMPTS: u32 = 10;
const SSH_BACKOFF_CAP: Duration = Duration::from_millis(3200);
/// Steps being created at once: each is a request to slurmctld.
const SRUN_FANOUT: usize = 32;

/// Start the engine host for `host` and run the handshake. SSH launches
/// share a fanout limit, and a connection sshd turned away for load
/// (MaxStartups) is tried again with backoff.
pub(crate) async fn launch(
    host: &HostSpec,
    config: &EngineHostConfig,
) -> Result<EngineHostProcess, LaunchError> {
    match host.launcher {
        LauncherKind::Local => return launch_once(host, config).await,
        LauncherKind::Slurm => return launch_step(host, config).await,
        LauncherKind::Ssh => {}
    }
    static FANOUT: Semaphore = Semaphore::const_new(SSH_FANOUT);
    let _permit = FANOUT
        .acquire()
        .await
        .expect("the fanout semaphore is never closed");
    let mut attempt = 1;
    loop {
        match launch_once(host, config).await {
            Err(LaunchError::Exited(why)) if attempt < SSH_ATTEMPTS && turned_away(&why) => {
                let backoff = Duration::from_millis(100 << attempt).min(SSH_BACKOFF_CAP) + jitter();
                eprintln!(
                    "[{}] sshd turned the connection away ({why}); retrying in {backoff:?}",
                    host.host
                );
                tokio::time::sleep(backoff).await;
                attempt += 1;
            }
            Err(LaunchError::Exited(said)) => {
                return Err(match needs_user(&said, &host.host) {
                    Some(hint) => LaunchError::NeedsUser { said, hint },
                    None => LaunchError::Exited(said),
                });
            }
            other => return other,
        }
    }
}

/// One node's step inside its allocation; a step srun could not create
/// gets srun's words and what to do.
async fn launch_step(
    host: &HostSpec,
    config: &EngineHostConfig,
) -> Result<EngineHostProcess, LaunchError> {
    static FANOUT: Semaphore = Semaphore::const_new(SRUN_FANOUT);
    let _permit = FANOUT
        .acquire()
        .await
        .expect("the fanout semaphore is never closed");
    match launch_once(host, config).await {
        Err(LaunchError::Exited(said)) => Err(match srun_hint(&said) {
            Some(hint) => LaunchError::StepRefused { said, hint },
            None => LaunchError::Exited(said),
        }),
        other => other,
    }
}

/// What to do when ssh stopped at a question: BatchMode answers every
/// prompt with "no", so `pcl up` fails at once instead of hanging.
fn needs_user(ssh_error: &str, host: &str) -> Option<String> {
    if ssh_error.contains("Host key verification failed") {
        Some(format!(
            "the host key of {host} is not known yet: accept it first (run `ssh {host}` \
             once), or set StrictHostKeyChecking in the cluster file's ssh_options"
        ))
    } else if ssh_error.contains("Permission denied") {
        Some(
            "pcl never prompts for passwords or passphrases: set up key login \
             (ssh-copy-id) and load the key into an agent (ssh-add), or set identity"
                .to_string(),
        )
    } else {
        None
    }
}

/// What ssh says when sshd drops a connection before authentication,
/// which is how MaxStartups refuses a burst.
fn turned_away(ssh_error: &str) -> bool {
    [
        "kex_exchange_identification",
        "ssh_exchange_identification",
        "Connection reset by peer",
        "Connection closed by remote host",
    ]
    .iter()
    .any(|sign| ssh_error.contains(sign))
}

/// Up to 100 ms, so that hosts turned away together do not return together.
fn jitter() -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    Duration::from_millis(u64::from(nanos % 100))
}

/// One launch: bootstrap if asked, configuration on stdin, then the
/// `PCL-ENGINE/1` line on stdout (lines before it, such as a MOTD, are
/// skipped).
async fn launch_once(
    host: &HostSpec,
    config: &EngineHostConfig,
) -> Result<EngineHostProcess, LaunchError> {
    let spawned = match host.launcher {
        LauncherKind::Local => LocalLauncher.spawn(host, &config.session).await?,
        LauncherKind::Ssh => SshLauncher.spawn(host, &config.session).await?,
        LauncherKind::Slurm => SlurmLauncher.spawn(host, &config.session).await?,
    };
    let Spawned {
        mut child,
        address,
        bootstrap,
    } = spawned;
    let stderr_kept = Arc::new(Mutex::new(StderrKept::default()));
    let mut stderr_drained = child.stderr.take().map(|stderr| {
        let kept = stderr_kept.clone();
        let label = host.host.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("[{label}] {line}");
                let mut kept = kept.lock().expect("stderr buffer lock");
                if kept.head.len() < STDERR_KEPT {
                    kept.head.push_str(&line);
                    kept.head.push('\n');
                }
                if kept.tail.len() == STDERR_TAIL_LINES {
                    kept.tail.pop_front();
                }
                kept.tail.push_back(line);
            }
        })
    });
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| std::io::Error::other("no stdin"))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| std::io::Error::other("no stdout"))?;

    let greet = async {
        let mut lines = BufReader::new(stdout).lines();
        if !bootstrap {
            send_config(&mut stdin, config).await?;
        }
        while let Some(line) = lines.next_line().await? {
            if bootstrap && line.starts_with(BOOT_PREFIX) {
                answer(&line, &mut stdin).await?;
                send_config(&mut stdin, config).await?;
            } else if let Some(rest) = line.strip_prefix(HANDSHAKE_PREFIX) {
                let (port, fingerprint) =
                    parse_handshake(rest).ok_or(LaunchError::BadHandshake(line))?;
                return Ok((port, fingerprint, lines.into_inner()));
            }
        }
        Err(LaunchError::Exited(String::new()))
    };
    let result = tokio::time::timeout(HANDSHAKE_TIMEOUT, greet).await;
    match result {
        Ok(Ok((port, fingerprint, stdout))) => Ok(EngineHostProcess {
            child,
            udp: udp_port(address, port),
            channel: Channel::spawn(stdout, stdin),
            fingerprint,
            exit: ExitNote {
                slurm_job: host.slurm_job.clone(),
                stderr: stderr_kept,
                drained: stderr_drained.take(),
            },
        }),
        Ok(Err(LaunchError::Exited(_))) | Ok(Err(LaunchError::Io(_))) => {
            // The process ended before greeting: its own words say why
            // (ssh's error, a missing binary, a failed upload).
            let status = child.wait().await?;
            // Read stderr to its end: on a loaded machine the reader can
            // lag the exit, and the retry decision depends on ssh's words.
            // Bounded, as a process left behind by ssh may hold it open.
            if let Some(drained) = stderr_drained {
                let _ = tokio::time::timeout(STDERR_DRAIN, drained).await;
            }
            let said = stderr_kept
                .lock()
                .expect("stderr buffer lock")
                .head
                .trim()
                .to_string();
            let code = status
                .code()
                .map(|c| format!("exit status {c}"))
                .unwrap_or_else(|| "killed".into());
            Err(LaunchError::Exited(if said.is_empty() {
                format!("engine host exited ({code}) before its handshake")
            } else {
                format!("{said} ({code})")
            }))
        }
        Ok(Err(e)) => Err(e),
        Err(_) => Err(LaunchError::HandshakeTimeout(HANDSHAKE_TIMEOUT.as_secs())),
    }
}

/// Port 0 is an engine host told not to listen on UDP.
fn udp_port(address: Result<IpAddr, String>, port: u16) -> Result<SocketAddr, String> {
    match port {
        0 => Err("the engine host does not listen on UDP".into()),
        port => address.map(|ip| SocketAddr::new(ip, port)),
    }
}

async fn send_config(stdin: &mut ChildStdin, config: &EngineHostConfig) -> Result<(), LaunchError> {
    let mut line = serde_json::to_vec(config).map_err(std::io::Error::other)?;
    line.push(b'\n');
    stdin.write_all(&line).await?;
    stdin.flush().await?;
    Ok(())
}

/// ` port=<p> fp=<hex>` -> (port, fingerprint)
fn parse_handshake(rest: &str) -> Option<(u16, String)> {
    let mut port = None;
    let mut fp = None;
    for field in rest.split_whitespace() {
        if let Some(p) = field.strip_prefix("port=") {
            port = p.parse().ok();
        } else if let Some(f) = field.strip_prefix("fp=") {
            fp = Some(f.to_string())
                .filter(|f| f.len() == 64 && f.bytes().all(|b| b.is_ascii_hexdigit()));
        }
    }
    Some((port?, fp?))
}

#[cfg(test)]
mod tests {
    use super::parse_handshake;

    #[test]
    fn maxstartups_refusals_are_retried_and_auth_failures_are_not() {
        assert!(super::turned_away(
            "kex_exchange_identification: read: Connection reset by peer (exit status 255)"
        ));
        assert!(!super::turned_away(
            "root@10.0.0.2: Permission denied (publickey). (exit status 255)"
        ));
    }

    #[test]
    fn prompts_ssh_could_not_ask_get_a_hint() {
        let hint = super::needs_user(
            "No ED25519 host key is known for node1.\nHost key verification failed.",
            "node1",
        )
        .unwrap();
        assert!(hint.contains("`ssh node1`"), "{hint}");
        let hint = super::needs_user("root@n: Permission denied (password).", "n").unwrap();
        assert!(hint.contains("never prompts"), "{hint}");
        assert_eq!(super::needs_user("Connection refused", "n"), None);
    }

    #[test]
    fn handshake_line() {
        let fp = "ab".repeat(32);
        assert_eq!(
            parse_handshake(&format!(" port=4433 fp={fp}")),
            Some((4433, fp))
        );
        assert_eq!(parse_handshake(" port=4433 fp=zz"), None);
        assert_eq!(parse_handshake(" fp=00"), None);
    }
}
