use tokio::net::UnixStream;

use super::{SessionError, SessionPaths};
use crate::protocol::session::{Reply, Request};
use crate::transport::{read_frame, write_frame};

/// The CLI's end of the session socket: one request, then its replies.
pub struct Client {
    stream: UnixStream,
}

impl Client {
    pub async fn connect(paths: &SessionPaths) -> Result<Self, SessionError> {
        match UnixStream::connect(&paths.socket).await {
            Ok(stream) => Ok(Self { stream }),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                ) =>
            {
                Err(SessionError::NoSession(paths.name.clone()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                Err(SessionError::OtherUser(paths.name.clone()))
            }
            Err(e) => Err(e.into()),
        }
    }

    pub async fn send(&mut self, request: &Request) -> Result<(), SessionError> {
        match write_frame(&mut self.stream, request).await {
            Ok(()) => Ok(()),
            // A daemon that refuses us says why before it hangs up.
            Err(e) => match read_frame(&mut self.stream).await {
                Ok(Some(Reply::Error(why))) => Err(SessionError::Refused(why)),
                _ => Err(e.into()),
            },
        }
    }

    pub async fn next(&mut self) -> Result<Reply, SessionError> {
        read_frame(&mut self.stream)
            .await?
            .ok_or(SessionError::Closed)
    }
}
