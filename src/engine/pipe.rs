//! The read end of a shell's stdout or stderr pipe. A read wakes as soon
//! as bytes arrive, which is right for one command, whose end should be
//! seen at once. A batch of tiny tasks writes three times per task, and
//! waking for each write would cost the engine host more than the tasks
//! themselves: with a gap set, a read that found bytes is followed by a
//! pause before the next, so one wakeup takes what a round of tasks wrote.
//! A pipe with nothing to read costs nothing however long its task runs,
//! and one found well filled is read again soon: the shell must not wait
//! on a full pipe for a whole gap.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, Interest, ReadBuf};
use tokio::time::{Instant, Sleep};

/// A round of reading that took this much means output is flowing fast
/// (a quarter of a default 64 KiB pipe): the pause after it is
/// `BUSY_GAP`, not the pipe's own.
const BUSY_ROUND: usize = 16 << 10;
const BUSY_GAP: Duration = Duration::from_millis(1);

pub(super) struct OutputPipe {
    fd: AsyncFd<OwnedFd>,
    /// The pause after a round of reading, if any.
    gap: Option<Duration>,
    /// Bytes read since the last pause.
    round: usize,
    /// Until when the pipe is left alone.
    pause: Pin<Box<Sleep>>,
}

impl OutputPipe {
    /// A pipe end, non-blocking from now on, read as soon as bytes arrive.
    pub(super) fn new(fd: OwnedFd) -> io::Result<OutputPipe> {
        // SAFETY: fcntl on a descriptor this value owns.
        let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
        if flags < 0
            || unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0
        {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: an `OwnedFd` names the same open descriptor for as long
        // as it lives, and the `AsyncFd` owns it.
        let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }?;
        Ok(OutputPipe {
            fd,
            gap: None,
            round: 0,
            pause: Box::pin(tokio::time::sleep(Duration::ZERO)),
        })
    }

    /// Pause `gap` after each round of reading from now on, or (None) read
    /// as soon as bytes arrive, ending any pause under way.
    pub(super) fn read_with_gap(&mut self, gap: Option<Duration>) {
        if gap.is_none() && self.gap.is_some() {
            self.pause.as_mut().reset(Instant::now());
        }
        self.gap = gap;
    }
}

/// One non-blocking read(2) into the unfilled part of `buf`, which is
/// not zeroed first (read(2) only writes, and only what it reports).
/// Returns how many bytes it read.
fn read_into(fd: &OwnedFd, buf: &mut ReadBuf<'_>) -> io::Result<usize> {
    // SAFETY: the bytes are only written, by read(2), never read here.
    let unfilled = unsafe { buf.unfilled_mut() };
    // SAFETY: reading into a buffer of the given length that we own.
    let n = unsafe { libc::read(fd.as_raw_fd(), unfilled.as_mut_ptr().cast(), unfilled.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = n as usize;
    // SAFETY: read(2) initialized the first `n` bytes.
    unsafe { buf.assume_init(n) };
    buf.advance(n);
    Ok(n)
}

impl AsyncRead for OutputPipe {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let pipe = self.get_mut();
        loop {
            ready!(pipe.pause.as_mut().poll(cx));
            let mut ready = ready!(pipe.fd.poll_read_ready(cx))?;
            match ready.try_io(|fd| read_into(fd.get_ref(), buf)) {
                Ok(Ok(n)) => {
                    pipe.round += n;
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                // Drained: the round ends here, and its pause begins.
                Err(_would_block) => {
                    if let (Some(gap), true) = (pipe.gap, pipe.round > 0) {
                        let gap = if pipe.round >= BUSY_ROUND {
                            BUSY_GAP
                        } else {
                            gap
                        };
                        pipe.pause.as_mut().reset(Instant::now() + gap);
                    }
                    pipe.round = 0;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::time::Duration;

    use std::pin::Pin;
    use std::task::Poll;

    use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};
    use tokio::time::Instant;

    use super::{BUSY_GAP, OutputPipe};

    /// A pipe whose read end is an `OutputPipe`, and its write end.
    fn pipe() -> (OutputPipe, std::fs::File) {
        let mut fds = [0; 2];
        // SAFETY: pipe(2) fills in two new descriptors, owned below.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: each descriptor is fresh and owned once.
        let (read, write) = unsafe {
            use std::os::fd::FromRawFd;
            (
                std::os::fd::OwnedFd::from_raw_fd(fds[0]),
                std::fs::File::from_raw_fd(fds[1]),
            )
        };
        (OutputPipe::new(read).unwrap(), write)
    }

    /// One round as a batch's shell loop reads it: write `bytes`, read
    /// them all, then find the pipe drained. Returns the virtual time the
    /// reads waited.
    async fn round(pipe: &mut OutputPipe, writer: &mut std::fs::File, bytes: usize) -> Duration {
        writer.write_all(&vec![b'x'; bytes]).unwrap();
        let start = Instant::now();
        let mut buf = vec![0u8; 1 << 20];
        let mut got = 0;
        while got < bytes {
            got += pipe.read(&mut buf).await.unwrap();
        }
        let waited = start.elapsed();
        let drained = std::future::poll_fn(|cx| {
            let mut buf = ReadBuf::new(&mut buf);
            Poll::Ready(Pin::new(&mut *pipe).poll_read(cx, &mut buf).is_pending())
        });
        assert!(drained.await, "more bytes than were written");
        waited
    }

    #[tokio::test(start_paused = true)]
    async fn a_gap_spaces_rounds_of_reading_but_not_a_full_pipe() {
        let (mut pipe, mut writer) = pipe();
        let gap = Duration::from_millis(25);
        assert_eq!(round(&mut pipe, &mut writer, 10).await, Duration::ZERO);
        assert_eq!(round(&mut pipe, &mut writer, 10).await, Duration::ZERO);
        pipe.read_with_gap(Some(gap));
        // Each round that found bytes is followed by the gap.
        assert_eq!(round(&mut pipe, &mut writer, 10).await, Duration::ZERO);
        assert_eq!(round(&mut pipe, &mut writer, 10).await, gap);
        // A well-filled round is followed by the short gap only.
        assert_eq!(round(&mut pipe, &mut writer, 32 << 10).await, gap);
        assert_eq!(round(&mut pipe, &mut writer, 10).await, BUSY_GAP);
        // Reading at once again ends the gap under way.
        pipe.read_with_gap(None);
        assert_eq!(round(&mut pipe, &mut writer, 10).await, Duration::ZERO);
        assert_eq!(round(&mut pipe, &mut writer, 10).await, Duration::ZERO);
    }
}
