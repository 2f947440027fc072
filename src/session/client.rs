use tokio::io::BufReader;
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

use super::{SessionError, SessionPaths};
use crate::protocol::session::{Reply, Request};
use crate::transport::{read_frame, write_frame};

/// Read from the socket at once: room for a few thousand small replies.
const REPLY_BUFFER: usize = 64 << 10;

/// The CLI's end of the session socket: one request, then its replies.
pub(crate) struct Client {
    /// Buffered: a px on a thousand engines answers with thousands of
    /// small frames, two reads each without it.
    read: BufReader<OwnedReadHalf>,
    write: Option<OwnedWriteHalf>,
    paths: SessionPaths,
    job: Option<u64>,
}

impl Client {
    pub(crate) async fn connect(paths: &SessionPaths) -> Result<Self, SessionError> {
        match UnixStream::connect(&paths.socket).await {
            Ok(stream) => {
                let (read, write) = stream.into_split();
                Ok(Self {
                    read: BufReader::with_capacity(REPLY_BUFFER, read),
                    write: Some(write),
                    paths: paths.clone(),
                    job: None,
                })
            }
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

    pub(crate) async fn send(&mut self, request: &Request) -> Result<(), SessionError> {
        let write = self.write.as_mut().ok_or(SessionError::Closed)?;
        match write_frame(write, request).await {
            Ok(()) => Ok(()),
            // A daemon that refuses us says why before it hangs up.
            Err(e) => match read_frame(&mut self.read).await {
                Ok(Some(Reply::Error(why))) => Err(SessionError::Refused(why)),
                _ => Err(e.into()),
            },
        }
    }

    /// The sending half, for a verb that streams input after its request.
    pub(crate) fn take_writer(&mut self) -> Option<OwnedWriteHalf> {
        self.write.take()
    }

    /// The next reply. The job id the daemon announces first is kept
    /// (see `job`), not returned.
    pub(crate) async fn next(&mut self) -> Result<Reply, SessionError> {
        loop {
            match self.next_frame().await? {
                Reply::Job(_) => {}
                reply => return Ok(reply),
            }
        }
    }

    /// The next reply, the job announcement included (so a caller can
    /// act on it at once, as Ctrl-C handling must).
    pub(crate) async fn next_frame(&mut self) -> Result<Reply, SessionError> {
        let reply = read_frame(&mut self.read)
            .await?
            .ok_or(SessionError::Closed)?;
        if let Reply::Job(id) = reply {
            self.job.get_or_insert(id);
        }
        Ok(reply)
    }

    /// The job this call runs as, once the daemon said so.
    pub(crate) fn job(&self) -> Option<u64> {
        self.job
    }

    pub(crate) fn paths(&self) -> &SessionPaths {
        &self.paths
    }
}
