//! An engine host serves only the daemon that launched it: a QUIC client
//! with another certificate, or one that pins another engine certificate,
//! gets nothing. Drives a real `pcl engine` process over real QUIC.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use pcl::protocol::engine::{EngineHostConfig, EngineReply, EngineRequest};
use pcl::transport::{Identity, client_endpoint, connect, read_frame, write_frame};

struct EngineHost {
    child: Child,
    addr: SocketAddr,
    fingerprint: String,
}

impl Drop for EngineHost {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_engine_host(trusted: &Identity) -> EngineHost {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pcl"))
        .args([
            "engine",
            "--session",
            "peer-auth-test",
            "--bind",
            "127.0.0.1:0",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("pcl engine starts");
    let workdir = tempfile::tempdir().unwrap();
    let config = EngineHostConfig {
        session: "peer-auth-test".into(),
        client_fingerprint: trusted.fingerprint(),
        host: "localhost".into(),
        first_id: 0,
        engines: 1,
        engine_count: 1,
        workdir: Some(workdir.path().display().to_string()),
        shell: "bash".into(),
        setup: None,
        reconnect_grace_secs: 60,
    };
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "{}", serde_json::to_string(&config).unwrap()).unwrap();
    // Keep the tether open for the test's lifetime.
    std::mem::forget(stdin);
    std::mem::forget(workdir);
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let mut port = 0;
    let mut fingerprint = String::new();
    for field in line.split_whitespace() {
        if let Some(p) = field.strip_prefix("port=") {
            port = p.parse().unwrap();
        }
        if let Some(f) = field.strip_prefix("fp=") {
            fingerprint = f.to_string();
        }
    }
    assert!(line.starts_with("PCL-ENGINE/1 "), "handshake line: {line}");
    EngineHost {
        child,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        fingerprint,
    }
}

/// Connect and ask the engine host to start; Ok only if it answered.
async fn try_start(client: &Identity, addr: SocketAddr, pinned: &str) -> Result<(), String> {
    let endpoint = client_endpoint().map_err(|e| e.to_string())?;
    let attempt = async {
        let conn = connect(&endpoint, client, addr, pinned, Duration::from_secs(10))
            .await
            .map_err(|e| e.to_string())?;
        let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
        write_frame(&mut send, &EngineRequest::Start)
            .await
            .map_err(|e| e.to_string())?;
        match read_frame::<_, EngineReply>(&mut recv).await {
            Ok(Some(EngineReply::Started(_))) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    };
    tokio::time::timeout(Duration::from_secs(10), attempt)
        .await
        .map_err(|_| "timed out".to_string())?
}

#[tokio::test]
async fn only_the_pinned_daemon_is_served() {
    let daemon = Identity::generate().unwrap();
    let host = start_engine_host(&daemon);

    let rogue = Identity::generate().unwrap();
    let refused = try_start(&rogue, host.addr, &host.fingerprint).await;
    assert!(
        refused.is_err(),
        "a client with another certificate was served"
    );

    let wrong_pin = "00".repeat(32);
    let refused = try_start(&daemon, host.addr, &wrong_pin).await;
    assert!(
        refused.is_err(),
        "the daemon accepted an engine certificate it did not pin"
    );

    try_start(&daemon, host.addr, &host.fingerprint)
        .await
        .expect("the pinned daemon is served");
}
