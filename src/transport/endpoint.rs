use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{
    ClientConfig, Connection, Endpoint, EndpointConfig, ServerConfig, TransportConfig, VarInt,
};
use rustls::crypto::CryptoProvider;

use super::pinning::PinnedCert;
use super::{Identity, TransportError};

const ALPN: &[u8] = b"pcl/1";

/// The engine side accepts whatever silence the daemon asks for (QUIC
/// takes the smaller of the two); the daemon's `link_timeout` decides.
const ENGINE_IDLE_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// Streams the engine host lets the daemon have open at once: one per
/// engine per request in flight.
const ENGINE_HOST_STREAMS: u32 = 4096;

/// quinn's defaults suit the internet; cluster links are short and fat,
/// so let a single bulk stream fill a LAN pipe. Keep-alives run well
/// inside the idle timeout, so only a dead host or a cut link reaches it.
/// `peer_streams` is how many streams the peer may open at once: quinn
/// keeps state for each of them from the start, so the daemon, whose
/// peers open none, allows none (at 4,096 that state was most of the
/// daemon's memory, half a MiB per host).
fn transport_config(idle: Duration, peer_streams: u32) -> Arc<TransportConfig> {
    let mut t = TransportConfig::default();
    // A cluster's round trips are short, so a few MiB in flight fill the
    // link; larger windows only buffer more when a disk is slower than the
    // network, and that shows as memory on both ends.
    t.stream_receive_window(VarInt::from_u32(4 << 20))
        .receive_window(VarInt::from_u32(8 << 20))
        .send_window(8 << 20)
        .max_concurrent_bidi_streams(VarInt::from_u32(peer_streams))
        .max_concurrent_uni_streams(VarInt::from_u32(0))
        .keep_alive_interval(Some((idle / 4).min(Duration::from_secs(2))))
        .max_idle_timeout(Some(idle.try_into().expect("idle timeout fits")));
    Arc::new(t)
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn udp_socket(addr: SocketAddr) -> Result<std::net::UdpSocket, TransportError> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))
        .map_err(TransportError::Bind)?;
    // Larger kernel buffers keep bursts from being dropped; the kernel caps
    // them at its own maximum, which is fine.
    let _ = socket.set_recv_buffer_size(8 << 20);
    let _ = socket.set_send_buffer_size(8 << 20);
    socket.bind(&addr.into()).map_err(TransportError::Bind)?;
    Ok(socket.into())
}

fn endpoint(addr: SocketAddr, server: Option<ServerConfig>) -> Result<Endpoint, TransportError> {
    let runtime = quinn::default_runtime()
        .ok_or_else(|| TransportError::QuicConfig("no async runtime".into()))?;
    Endpoint::new(
        EndpointConfig::default(),
        server,
        udp_socket(addr)?,
        runtime,
    )
    .map_err(TransportError::Bind)
}

/// The engine side: serves only a client whose certificate has the pinned
/// fingerprint; anyone else fails the TLS handshake before any stream.
pub fn server_endpoint(
    identity: &Identity,
    client_fingerprint: &str,
    bind: SocketAddr,
) -> Result<Endpoint, TransportError> {
    let provider = provider();
    let mut tls = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(PinnedCert::new(client_fingerprint, provider))
        .with_single_cert(identity.cert_chain(), identity.key())?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto =
        QuicServerConfig::try_from(tls).map_err(|e| TransportError::QuicConfig(e.to_string()))?;
    let mut config = ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(transport_config(ENGINE_IDLE_TIMEOUT, ENGINE_HOST_STREAMS));
    endpoint(bind, Some(config))
}

/// The daemon side: one endpoint for all engine hosts.
pub fn client_endpoint() -> Result<Endpoint, TransportError> {
    endpoint(SocketAddr::from(([0, 0, 0, 0], 0)), None)
}

/// Connect to an engine host, presenting `identity` and accepting only the
/// certificate named by `server_fingerprint`. After `idle` without a word
/// from the host the connection fails.
pub async fn connect(
    endpoint: &Endpoint,
    identity: &Identity,
    addr: SocketAddr,
    server_fingerprint: &str,
    idle: Duration,
) -> Result<Connection, TransportError> {
    let provider = provider();
    let mut tls = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(PinnedCert::new(server_fingerprint, provider))
        .with_client_auth_cert(identity.cert_chain(), identity.key())?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto =
        QuicClientConfig::try_from(tls).map_err(|e| TransportError::QuicConfig(e.to_string()))?;
    let mut config = ClientConfig::new(Arc::new(crypto));
    config.transport_config(transport_config(idle, 0));
    Ok(endpoint.connect_with(config, addr, "pcl")?.await?)
}
