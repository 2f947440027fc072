//! A relayed `push --file`: the daemon sends the bulk stream once, and
//! engine hosts pass it on to the hosts the daemon named, each writing its
//! own copy. What the daemon, the relaying hosts and their peers say.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// An engine host another host may pass the stream on to: where it
/// listens and the certificate it must present.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayPeer {
    pub addr: SocketAddr,
    pub fingerprint: String,
}

/// Daemon -> engine host: write the bulk stream that will come into
/// `path`, as `WriteFile` does, and pass it on to `downstream` as it
/// arrives. Answered by `RelayReady` once the temporary file exists, then
/// by `Relayed`, `Resume` and `PeerUnreachable` as they happen, and last
/// by `Stored` or `Error`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RelayFile {
    pub id: u32,
    pub path: String,
    /// Names this push on peer connections.
    pub transfer: u64,
    /// The one peer certificate that may feed this host; `None`: only the
    /// daemon will.
    pub upstream: Option<String>,
    pub downstream: Vec<RelayPeer>,
    /// Silence after which a peer connection counts as lost.
    pub peer_timeout_ms: u64,
}

/// Daemon -> engine host, on the stream of a `RelayFile` after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RelayControl {
    /// Every host of the push is ready: connect to the downstream peers.
    Dial,
    /// The bulk stream follows on this stream, from its byte `from` on
    /// (0, or where the host asked to `Resume`); nothing else comes after.
    Feed { from: u64 },
}

/// Peer -> engine host: the first frame of a relay stream; the bulk
/// stream from its start follows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayHello {
    pub transfer: u64,
}
