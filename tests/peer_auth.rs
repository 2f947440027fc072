//! An engine host serves only the daemon that launched it: a QUIC client
//! with another certificate, or one that pins another engine certificate,
//! gets nothing, over UDP and over the channel of its stdin and stdout
//! alike. Drives a real `pcl engine` process over real QUIC.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use pcl::protocol::data::{Bulk, Checksum, EngineData, chunk_header};
use pcl::protocol::engine::{EngineHostConfig, EngineReply, EngineRequest};
use pcl::protocol::relay::{RelayControl, RelayFile, RelayHello};
use pcl::transport::{
    Channel, Identity, Via, client_channel_endpoint, client_endpoint, connect, encode_frame,
    read_frame, write_frame,
};
use quinn::Endpoint;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

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

fn config(trusted: &Identity, workdir: &std::path::Path) -> EngineHostConfig {
    EngineHostConfig {
        session: "peer-auth-test".into(),
        client_fingerprint: trusted.fingerprint(),
        host: "localhost".into(),
        first_id: 0,
        engines: 1,
        engine_count: 1,
        workdir: Some(workdir.display().to_string()),
        shell: "bash".into(),
        setup: None,
        reconnect_grace_secs: 60,
        listen_udp: true,
    }
}

fn start_engine_host(trusted: &Identity) -> EngineHost {
    start_engine_host_in(trusted, tempfile::tempdir().unwrap().keep())
}

fn start_engine_host_in(trusted: &Identity, workdir: std::path::PathBuf) -> EngineHost {
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
    let config = config(trusted, &workdir);
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "{}", serde_json::to_string(&config).unwrap()).unwrap();
    // Keep the tether open for the test's lifetime.
    std::mem::forget(stdin);
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

/// An engine host whose only path is its stdin and stdout, and the
/// daemon side's endpoint over them.
async fn start_engine_host_over_channel(
    trusted: &Identity,
) -> (tokio::process::Child, Endpoint, String) {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_pcl"))
        .args(["engine", "--session", "peer-auth-test"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("pcl engine starts");
    let workdir = tempfile::tempdir().unwrap().keep();
    let mut config = config(trusted, &workdir);
    config.listen_udp = false;
    let mut stdin = child.stdin.take().unwrap();
    let mut line = serde_json::to_vec(&config).unwrap();
    line.push(b'\n');
    stdin.write_all(&line).await.unwrap();
    let mut stdout = tokio::io::BufReader::new(child.stdout.take().unwrap());
    let mut handshake = String::new();
    stdout.read_line(&mut handshake).await.unwrap();
    assert!(
        handshake.starts_with("PCL-ENGINE/1 port=0 "),
        "no UDP port: {handshake}"
    );
    let fingerprint = handshake
        .trim_end()
        .rsplit("fp=")
        .next()
        .unwrap()
        .to_string();
    let channel = Channel::spawn(stdout, stdin);
    let endpoint = client_channel_endpoint(channel.socket.clone()).unwrap();
    // Keep the tether open for the test's lifetime.
    std::mem::forget(channel);
    (child, endpoint, fingerprint)
}

/// Connect and ask the engine host to start; Ok only if it answered.
async fn try_start(client: &Identity, addr: SocketAddr, pinned: &str) -> Result<(), String> {
    let endpoint = client_endpoint().map_err(|e| e.to_string())?;
    try_start_via(&endpoint, Via::Udp(addr), client, pinned).await
}

async fn try_start_via(
    endpoint: &Endpoint,
    via: Via,
    client: &Identity,
    pinned: &str,
) -> Result<(), String> {
    let attempt = async {
        let conn = connect(endpoint, client, via, pinned, Duration::from_secs(10))
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

#[tokio::test]
async fn only_the_pinned_daemon_is_served_over_the_channel() {
    let daemon = Identity::generate().unwrap();
    let (_child, endpoint, fingerprint) = start_engine_host_over_channel(&daemon).await;

    let rogue = Identity::generate().unwrap();
    let refused = try_start_via(&endpoint, Via::Channel, &rogue, &fingerprint).await;
    assert!(
        refused.is_err(),
        "a client with another certificate was served"
    );
    let wrong_pin = "00".repeat(32);
    let refused = try_start_via(&endpoint, Via::Channel, &daemon, &wrong_pin).await;
    assert!(
        refused.is_err(),
        "the daemon accepted an engine certificate it did not pin"
    );
    try_start_via(&endpoint, Via::Channel, &daemon, &fingerprint)
        .await
        .expect("the pinned daemon is served");
}

/// The bulk stream of `data`, as a relaying peer sends it.
fn bulk_stream(data: &[u8]) -> Vec<u8> {
    let mut stream = chunk_header(data.len());
    stream.extend_from_slice(data);
    let mut digest = Checksum::new();
    digest.update(data);
    stream.extend(encode_frame(&Bulk::End(digest.digest())).unwrap());
    stream
}

/// Whether a stream opened on `conn` with `first` gets any answer at all.
async fn answered(conn: &quinn::Connection, first: &[u8]) -> bool {
    let attempt = async {
        let (mut send, mut recv) = conn.open_bi().await.ok()?;
        send.write_all(first).await.ok()?;
        let _ = send.finish();
        let mut byte = [0u8; 1];
        recv.read_exact(&mut byte).await.ok()
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(3), attempt).await,
        Ok(Some(()))
    )
}

#[tokio::test]
async fn a_relay_admits_only_the_peer_the_daemon_named_and_only_for_its_push() {
    let daemon = Identity::generate().unwrap();
    let workdir = tempfile::tempdir().unwrap();
    let host = start_engine_host_in(&daemon, workdir.path().to_path_buf());
    let endpoint = client_endpoint().unwrap();
    let idle = Duration::from_secs(10);
    let to_host = connect(
        &endpoint,
        &daemon,
        Via::Udp(host.addr),
        &host.fingerprint,
        idle,
    )
    .await
    .unwrap();

    let named = Identity::generate().unwrap();
    // Not yet named: refused at the handshake like any stranger.
    assert!(
        try_start(&named, host.addr, &host.fingerprint)
            .await
            .is_err(),
        "a peer was let in before any push named it"
    );

    let (mut control, mut replies) = to_host.open_bi().await.unwrap();
    let relay = RelayFile {
        id: 0,
        path: "got.bin".into(),
        transfer: 42,
        upstream: Some(named.fingerprint()),
        downstream: Vec::new(),
        peer_timeout_ms: 5000,
    };
    write_frame(
        &mut control,
        &EngineRequest::Data(EngineData::RelayFile(relay)),
    )
    .await
    .unwrap();
    let ready = read_frame::<_, EngineReply>(&mut replies).await.unwrap();
    assert!(matches!(ready, Some(EngineReply::RelayReady)), "{ready:?}");

    // A stranger still gets nothing.
    let rogue = Identity::generate().unwrap();
    let peer_endpoint = client_endpoint().unwrap();
    let refused = connect(
        &peer_endpoint,
        &rogue,
        Via::Udp(host.addr),
        &host.fingerprint,
        idle,
    )
    .await;
    let stranger_served = match refused {
        Ok(conn) => answered(&conn, &encode_frame(&RelayHello { transfer: 42 }).unwrap()).await,
        Err(_) => false,
    };
    assert!(!stranger_served, "a peer nobody named was served");

    // The named peer is let in, but may not run anything, nor feed
    // another push than its own.
    let peer = connect(
        &peer_endpoint,
        &named,
        Via::Udp(host.addr),
        &host.fingerprint,
        idle,
    )
    .await
    .expect("the named peer is let in");
    assert!(
        !answered(&peer, &encode_frame(&EngineRequest::Start).unwrap()).await,
        "a relaying peer was answered a request"
    );
    let wrong = bulk_stream(b"not this push");
    let mut hello = encode_frame(&RelayHello { transfer: 43 }).unwrap();
    hello.extend(&wrong);
    assert!(!answered(&peer, &hello).await);

    write_frame(&mut control, &RelayControl::Dial)
        .await
        .unwrap();
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    let (mut send, _recv) = peer.open_bi().await.unwrap();
    write_frame(&mut send, &RelayHello { transfer: 42 })
        .await
        .unwrap();
    send.write_all(&bulk_stream(&data)).await.unwrap();
    send.finish().unwrap();
    let stored = async {
        loop {
            match read_frame::<_, EngineReply>(&mut replies).await {
                Ok(Some(EngineReply::Relayed(_))) => continue,
                other => return other.map_err(|e| e.to_string()),
            }
        }
    };
    let stored = tokio::time::timeout(Duration::from_secs(10), stored)
        .await
        .expect("an answer");
    assert!(
        matches!(stored, Ok(Some(EngineReply::Stored))),
        "{stored:?}"
    );
    assert_eq!(std::fs::read(workdir.path().join("got.bin")).unwrap(), data);

    // The push is over: the peer is a stranger again.
    let again = connect(
        &client_endpoint().unwrap(),
        &named,
        Via::Udp(host.addr),
        &host.fingerprint,
        idle,
    )
    .await;
    let served = match again {
        Ok(conn) => answered(&conn, &encode_frame(&RelayHello { transfer: 42 }).unwrap()).await,
        Err(_) => false,
    };
    assert!(!served, "a peer stayed admitted after its push");
}
