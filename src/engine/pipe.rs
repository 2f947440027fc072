//! The read end of a shell's stdout or stderr pipe, read in one of two
//! ways. Watched (the default), a read wakes as soon as bytes arrive: right
//! for one command, whose end should be seen at once. Polled, the pipe is
//! out of the reactor and read every few milliseconds: a batch of tiny
//! tasks writes three times per task, and waking for each write would cost
//! the engine host more than the tasks themselves.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, Interest, ReadBuf};
use tokio::time::{Instant, Sleep};

pub(super) struct OutputPipe {
    mode: Mode,
}

enum Mode {
    Watched(AsyncFd<OwnedFd>),
    Polled {
        fd: OwnedFd,
        every: Duration,
        next: Pin<Box<Sleep>>,
    },
    /// Only while switching modes.
    Detached,
}

impl OutputPipe {
    /// A pipe end, non-blocking from now on, watched.
    pub(super) fn new(fd: OwnedFd) -> io::Result<OutputPipe> {
        // SAFETY: fcntl on a descriptor this value owns.
        let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
        if flags < 0
            || unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0
        {
            return Err(io::Error::last_os_error());
        }
        Ok(OutputPipe {
            mode: Mode::Watched(watch(fd)?),
        })
    }

    /// Read every `every` from now on, or (None) as soon as bytes arrive.
    pub(super) fn poll_every(&mut self, every: Option<Duration>) -> io::Result<()> {
        let fd = match (std::mem::replace(&mut self.mode, Mode::Detached), every) {
            (Mode::Watched(watched), None) => {
                self.mode = Mode::Watched(watched);
                return Ok(());
            }
            (Mode::Polled { fd, next, .. }, Some(every)) => {
                self.mode = Mode::Polled { fd, every, next };
                return Ok(());
            }
            (Mode::Watched(watched), Some(_)) => watched.into_inner(),
            (Mode::Polled { fd, .. }, None) => fd,
            (Mode::Detached, _) => return Err(io::Error::other("pipe lost while switching")),
        };
        self.mode = match every {
            Some(every) => Mode::Polled {
                fd,
                every,
                next: Box::pin(tokio::time::sleep(every)),
            },
            None => Mode::Watched(watch(fd)?),
        };
        Ok(())
    }
}

fn watch(fd: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: an `OwnedFd` names the same open descriptor for as long as
    // it lives, and the `AsyncFd` owns it.
    Ok(unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }?)
}

/// One non-blocking read(2) into the unfilled part of `buf`, which is
/// not zeroed first (read(2) only writes, and only what it reports).
fn read_into(fd: &OwnedFd, buf: &mut ReadBuf<'_>) -> io::Result<()> {
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
    Ok(())
}

impl AsyncRead for OutputPipe {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.get_mut().mode {
            Mode::Watched(watched) => loop {
                let mut ready = ready!(watched.poll_read_ready(cx))?;
                if let Ok(result) = ready.try_io(|fd| read_into(fd.get_ref(), buf)) {
                    return Poll::Ready(result);
                }
            },
            Mode::Polled { fd, every, next } => loop {
                match read_into(fd, buf) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        if next.is_elapsed() {
                            next.as_mut().reset(Instant::now() + *every);
                        }
                        ready!(next.as_mut().poll(cx));
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    result => return Poll::Ready(result),
                }
            },
            Mode::Detached => Poll::Ready(Err(io::Error::other("pipe lost while switching"))),
        }
    }
}
