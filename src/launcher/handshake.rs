use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin};

use super::bootstrap::{BOOT_PREFIX, answer};
use super::{LaunchError, Launcher, LocalLauncher, Spawned, SshLauncher};
use crate::config::{HostSpec, LauncherKind};
use crate::protocol::engine::{EngineHostConfig, HANDSHAKE_PREFIX};

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);
/// Enough of an engine host's stderr to explain a failure.
const STDERR_KEPT: usize = 16 << 10;

/// A running engine host, greeted and ready for a QUIC connection.
pub struct EngineHostProcess {
    pub child: Child,
    /// Held open as the tether: dropping it makes the engine host exit.
    pub stdin: ChildStdin,
    pub addr: SocketAddr,
    pub fingerprint: String,
}

/// Start the engine host for `host` and run the handshake: bootstrap if
/// asked, configuration on stdin, then the `PCL-ENGINE/1` line on stdout
/// (lines before it, such as a MOTD, are skipped).
pub async fn launch(
    host: &HostSpec,
    config: &EngineHostConfig,
) -> Result<EngineHostProcess, LaunchError> {
    let spawned = match host.launcher {
        LauncherKind::Local => LocalLauncher.spawn(host, &config.session).await?,
        LauncherKind::Ssh => SshLauncher.spawn(host, &config.session).await?,
    };
    let Spawned {
        mut child,
        address,
        bootstrap,
    } = spawned;
    let stderr_kept = Arc::new(Mutex::new(String::new()));
    if let Some(stderr) = child.stderr.take() {
        let kept = stderr_kept.clone();
        let label = host.host.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("[{label}] {line}");
                let mut kept = kept.lock().expect("stderr buffer lock");
                if kept.len() < STDERR_KEPT {
                    kept.push_str(&line);
                    kept.push('\n');
                }
            }
        });
    }
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
                return parse_handshake(rest).ok_or(LaunchError::BadHandshake(line));
            }
        }
        Err(LaunchError::Exited(String::new()))
    };
    let result = tokio::time::timeout(HANDSHAKE_TIMEOUT, greet).await;
    match result {
        Ok(Ok((port, fingerprint))) => Ok(EngineHostProcess {
            child,
            stdin,
            addr: SocketAddr::new(address, port),
            fingerprint,
        }),
        Ok(Err(LaunchError::Exited(_))) | Ok(Err(LaunchError::Io(_))) => {
            // The process ended before greeting: its own words say why
            // (ssh's error, a missing binary, a failed upload).
            let status = child.wait().await?;
            // Give the stderr reader a moment to drain the last lines.
            tokio::time::sleep(Duration::from_millis(50)).await;
            let said = stderr_kept
                .lock()
                .expect("stderr buffer lock")
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
