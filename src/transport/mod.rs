//! QUIC between the session daemon and engine hosts: pinned self-signed
//! certificates on both sides, one connection per host, one bidirectional
//! stream per request carrying length-prefixed frames. The datagrams go
//! over UDP, or over the ssh channel where UDP cannot get through.

mod channel;
mod endpoint;
mod error;
mod frame;
mod identity;
mod pinning;
mod stream_end;

pub use channel::{Channel, ChannelClose, ChannelSocket};
pub use endpoint::{
    Via, client_channel_endpoint, client_endpoint, connect, server_channel_endpoint,
    server_endpoint,
};
pub use error::TransportError;
pub use frame::{
    MAX_FRAME, decode, encode_frame, encode_frame_into, read_frame, take_buffered_frame,
    write_frame,
};
pub use identity::{Identity, fingerprint};
pub use pinning::{PeerPin, PeerPins, peer_fingerprint};
pub use stream_end::take_end_if_there;
