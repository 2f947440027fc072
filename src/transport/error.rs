use thiserror::Error;

#[derive(Debug, Error)]
pub enum TransportError {
    #[error("cannot make a certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("TLS setup failed: {0}")]
    Tls(#[from] rustls::Error),
    #[error("QUIC setup failed: {0}")]
    QuicConfig(String),
    #[error("cannot bind a UDP socket: {0}")]
    Bind(std::io::Error),
    #[error("cannot connect: {0}")]
    Connect(#[from] quinn::ConnectError),
    #[error("connection failed: {0}")]
    Connection(#[from] quinn::ConnectionError),
    #[error("stream failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("frame of {0} bytes is larger than the {MAX} byte limit", MAX = super::MAX_FRAME)]
    FrameTooLarge(usize),
    #[error("malformed frame: {0}")]
    Decode(#[from] postcard::Error),
}
