use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{
    ClientConfig, Connection, Endpoint, EndpointConfig, ServerConfig, TransportConfig, VarInt,
};
use rustls::crypto::CryptoProvider;

use super::channel::{CHANNEL_MTU, CHANNEL_PEER, ChannelSocket};
use super::pinning::{PeerPins, PinnedCert};
use super::{Identity, TransportError};

const ALPN: &[u8] = b"pcl/1";

/// The engine side accepts whatever silence the daemon asks for (QUIC
/// takes the smaller of the two); the daemon's `link_timeout` decides.
const ENGINE_IDLE_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// Where a connection's datagrams travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// UDP, straight to the engine host's port.
    Udp(SocketAddr),
    /// The ssh channel the engine host was started on.
    Channel,
}

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
fn transport_config(idle: Duration, peer_streams: u32, via_channel: bool) -> Arc<TransportConfig> {
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
    if via_channel {
        // A byte stream has no MTU to discover: use large packets at once,
        // with a first congestion window that holds ten of them, as the
        // default does for LAN-sized packets (or not even one would fit).
        let mut cubic = quinn::congestion::CubicConfig::default();
        cubic.initial_window(10 * u64::from(CHANNEL_MTU));
        t.initial_mtu(CHANNEL_MTU)
            .min_mtu(CHANNEL_MTU)
            .mtu_discovery_config(None)
            .congestion_controller_factory(Arc::new(cubic));
    }
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

fn runtime() -> Result<Arc<dyn quinn::Runtime>, TransportError> {
    quinn::default_runtime().ok_or_else(|| TransportError::QuicConfig("no async runtime".into()))
}

fn endpoint(addr: SocketAddr, server: Option<ServerConfig>) -> Result<Endpoint, TransportError> {
    Endpoint::new(
        EndpointConfig::default(),
        server,
        udp_socket(addr)?,
        runtime()?,
    )
    .map_err(TransportError::Bind)
}

fn channel_endpoint(
    socket: Arc<ChannelSocket>,
    server: Option<ServerConfig>,
) -> Result<Endpoint, TransportError> {
    let mut config = EndpointConfig::default();
    config
        .max_udp_payload_size(CHANNEL_MTU)
        .map_err(|e| TransportError::QuicConfig(e.to_string()))?;
    Endpoint::new_with_abstract_socket(config, server, socket, runtime()?)
        .map_err(TransportError::Bind)
}

/// The engine side's TLS: serves only a client whose certificate `pins`
/// admits (the daemon's, and relaying peers the daemon named); anyone else
/// fails the handshake before any stream.
fn server_config(
    identity: &Identity,
    pins: Arc<PeerPins>,
    via_channel: bool,
) -> Result<ServerConfig, TransportError> {
    let provider = provider();
    let mut tls = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(PinnedCert::peers(pins, provider))
        .with_single_cert(identity.cert_chain(), identity.key())?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto =
        QuicServerConfig::try_from(tls).map_err(|e| TransportError::QuicConfig(e.to_string()))?;
    let mut config = ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(transport_config(
        ENGINE_IDLE_TIMEOUT,
        ENGINE_HOST_STREAMS,
        via_channel,
    ));
    Ok(config)
}

/// The engine side over UDP, bound to `bind`.
pub fn server_endpoint(
    identity: &Identity,
    pins: Arc<PeerPins>,
    bind: SocketAddr,
) -> Result<Endpoint, TransportError> {
    endpoint(bind, Some(server_config(identity, pins, false)?))
}

/// The engine side over the channel it was started on.
pub fn server_channel_endpoint(
    identity: &Identity,
    pins: Arc<PeerPins>,
    socket: Arc<ChannelSocket>,
) -> Result<Endpoint, TransportError> {
    channel_endpoint(socket, Some(server_config(identity, pins, true)?))
}

/// The daemon side: one endpoint for all engine hosts reached over UDP.
pub fn client_endpoint() -> Result<Endpoint, TransportError> {
    endpoint(SocketAddr::from(([0, 0, 0, 0], 0)), None)
}

/// The daemon side of one engine host's channel.
pub fn client_channel_endpoint(socket: Arc<ChannelSocket>) -> Result<Endpoint, TransportError> {
    channel_endpoint(socket, None)
}

/// Connect to an engine host, presenting `identity` and accepting only the
/// certificate named by `server_fingerprint`. After `idle` without a word
/// from the host the connection fails. `endpoint` is the one `via` needs:
/// the shared UDP endpoint, or the host's channel endpoint.
pub async fn connect(
    endpoint: &Endpoint,
    identity: &Identity,
    via: Via,
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
    let (addr, via_channel) = match via {
        Via::Udp(addr) => (addr, false),
        Via::Channel => (CHANNEL_PEER, true),
    };
    config.transport_config(transport_config(idle, 0, via_channel));
    Ok(endpoint.connect_with(config, addr, "pcl")?.await?)
}

/// Both ends of one QUIC connection over an in-memory byte stream, each
/// side pinning the other's certificate as in a session: for tests.
#[cfg(test)]
pub(crate) mod test_link {
    use super::*;
    use crate::transport::Channel;

    /// What the connections need kept alive: the byte stream's pumps and
    /// the endpoints.
    pub(crate) struct Kept {
        _ends: (Channel, Channel, Endpoint, Endpoint),
    }

    /// The engine host's side, the daemon's side, and what keeps them up.
    pub(crate) async fn link() -> (Connection, Connection, Kept) {
        let (a, b) = tokio::io::duplex(1 << 16);
        let (a_read, a_write) = tokio::io::split(a);
        let (b_read, b_write) = tokio::io::split(b);
        let engine_side = Channel::spawn(a_read, a_write);
        let daemon_side = Channel::spawn(b_read, b_write);
        let engine = Identity::generate().unwrap();
        let daemon = Identity::generate().unwrap();
        let server = server_channel_endpoint(
            &engine,
            PeerPins::new(&daemon.fingerprint()),
            engine_side.socket.clone(),
        )
        .unwrap();
        let client = client_channel_endpoint(daemon_side.socket.clone()).unwrap();
        let accepting = {
            let server = server.clone();
            tokio::spawn(async move { server.accept().await.unwrap().await.unwrap() })
        };
        let daemon_conn = connect(
            &client,
            &daemon,
            Via::Channel,
            &engine.fingerprint(),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
        let engine_conn = accepting.await.unwrap();
        let kept = Kept {
            _ends: (engine_side, daemon_side, server, client),
        };
        (engine_conn, daemon_conn, kept)
    }
}

#[cfg(test)]
mod tests {
    use super::test_link::link;

    /// A payload sent over a link and echoed back.
    async fn over_a_byte_stream(bytes: usize) -> Vec<u8> {
        let (engine, daemon, _kept) = link().await;
        let serve = tokio::spawn(async move {
            let (mut send, mut recv) = engine.accept_bi().await.unwrap();
            let data = recv.read_to_end(usize::MAX).await.unwrap();
            send.write_all(&data).await.unwrap();
            send.finish().unwrap();
            engine.closed().await;
        });
        let (mut send, mut recv) = daemon.open_bi().await.unwrap();
        let payload: Vec<u8> = (0..bytes).map(|i| (i * 7 % 251) as u8).collect();
        send.write_all(&payload).await.unwrap();
        send.finish().unwrap();
        let echoed = recv.read_to_end(usize::MAX).await.unwrap();
        daemon.close(0u32.into(), b"done");
        serve.await.unwrap();
        assert_eq!(echoed, payload);
        echoed
    }

    #[tokio::test]
    async fn quic_runs_over_a_byte_stream_with_pinned_certificates() {
        over_a_byte_stream(10).await;
        over_a_byte_stream(5 << 20).await;
    }
}
