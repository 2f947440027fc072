//! The read end of a shell's stdout or stderr pipe. A read wakes as soon
//! as bytes arrive, which is right for one command, whose end should be
//! seen at once. A batch of tiny tasks writes three times per task, and
//! waking for each write would cost the engine host more than the tasks
//! themselves: with a gap set, a round of reading that found bytes is
//! followed by a pause with the pipe out of the reactor (so the shell's
//! writes wake nothing), then another round, and one wakeup takes what a
//! round of tasks wrote. A pause that finds nothing puts the pipe back in
//! the reactor: a task that runs long, writing nothing, costs nothing. A
//! round that found the pipe well filled is followed by no pause at all:
//! output is flowing fast, each wakeup has plenty to take. And a pause
//! that ends with the pipe full (the shell may have waited on it) makes
//! the next ones shorter, until pauses end with little to read again.
//! Pauses end on one grid shared by every pipe of the engine host, and a
//! pipe woken from the reactor while a gap is set waits for the grid too:
//! the engine host's shells are read in the same wakeup, and their tasks'
//! results leave in one packet.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, Interest, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::read_grid::next_on_grid;

/// A round of reading that took this much means output is flowing fast
/// (a quarter of a default 64 KiB pipe): no pause follows it.
const BUSY_ROUND: usize = 16 << 10;
/// A first read after a pause this large found the pipe (nearly) full.
const FULL_READ: usize = 48 << 10;
/// The most read from a shell's pipe at once: a pipe's whole buffer.
pub(super) const PIPE_READ: usize = 64 << 10;
/// The shortest pause.
const MIN_PAUSE: Duration = Duration::from_millis(1);

pub(super) struct OutputPipe {
    mode: Mode,
    /// The longest pause after a round of reading, if any.
    gap: Option<Duration>,
    /// The pause after the next round: the gap, or less while pauses end
    /// with the pipe full.
    pause: Duration,
    /// Bytes read in this round.
    round: usize,
    /// No read yet since the last pause ended.
    first_after_pause: bool,
    /// Bytes that wake the pipe in the reactor are read at the next grid
    /// point, not at once (while a gap is set, until a round finds the
    /// pipe well filled).
    waits_for_grid: bool,
}

enum Mode {
    /// In the reactor: read when bytes arrive.
    Watched(AsyncFd<OwnedFd>),
    /// Out of it until the pause ends.
    Paused { fd: OwnedFd, until: Pin<Box<Sleep>> },
    /// Only while switching modes, or after a switch failed.
    Detached,
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
        Ok(OutputPipe {
            mode: Mode::Watched(watch(fd)?),
            gap: None,
            pause: Duration::ZERO,
            round: 0,
            first_after_pause: false,
            waits_for_grid: false,
        })
    }

    /// Append to `buf` everything the pipe holds now, without waiting
    /// (an end of file reads as nothing more). With a gap set, this is a
    /// round of reading like any other: a pause follows it.
    pub(super) fn read_held(&mut self, buf: &mut Vec<u8>) -> io::Result<()> {
        let fd = match &self.mode {
            Mode::Watched(watched) => watched.get_ref(),
            Mode::Paused { fd, .. } => fd,
            Mode::Detached => return Err(io::Error::other("pipe lost while switching")),
        };
        loop {
            buf.reserve(PIPE_READ);
            let len = buf.len();
            let mut spare = ReadBuf::uninit(buf.spare_capacity_mut());
            match read_into(fd, &mut spare) {
                Ok(0) => return Ok(()),
                Ok(n) => {
                    // SAFETY: read(2) initialized the first `n` spare bytes.
                    unsafe { buf.set_len(len + n) };
                    self.round += n;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return self.round_ended(),
                Err(e) => return Err(e),
            }
        }
    }

    /// Pause `gap` after each round of reading from now on, or (None) read
    /// as soon as bytes arrive, ending any pause under way.
    pub(super) fn read_with_gap(&mut self, gap: Option<Duration>) -> io::Result<()> {
        if let Some(gap) = gap {
            self.pause = if self.gap.is_none() {
                // Rounds are counted from here: without a gap, a short
                // read does not end one.
                self.round = 0;
                self.waits_for_grid = true;
                gap
            } else {
                self.pause.min(gap)
            };
        }
        self.gap = gap;
        if gap.is_none() && matches!(self.mode, Mode::Paused { .. }) {
            self.watch()?;
        }
        Ok(())
    }

    /// What the first read after a pause found (`None`: nothing) tells
    /// how long the next pause may be.
    fn learn_from_pause(&mut self, read: Option<usize>) {
        let (true, Some(gap)) = (std::mem::take(&mut self.first_after_pause), self.gap) else {
            return;
        };
        self.pause = match read {
            Some(n) if n >= FULL_READ => (self.pause / 4).max(MIN_PAUSE),
            _ => (self.pause * 2).min(gap),
        };
    }

    /// Back into the reactor.
    fn watch(&mut self) -> io::Result<()> {
        match std::mem::replace(&mut self.mode, Mode::Detached) {
            Mode::Paused { fd, .. } => self.mode = Mode::Watched(watch(fd)?),
            other => self.mode = other,
        }
        Ok(())
    }

    /// The round just ended with the pipe drained.
    fn round_ended(&mut self) -> io::Result<()> {
        let round = std::mem::take(&mut self.round);
        if self.gap.is_none() || round == 0 {
            return Ok(());
        }
        if round >= BUSY_ROUND {
            self.waits_for_grid = false;
            return self.watch();
        }
        self.pause_until_grid();
        Ok(())
    }

    /// Out of the reactor until the next point of the pause's grid.
    fn pause_until_grid(&mut self) {
        self.first_after_pause = true;
        let until = next_on_grid(Instant::now(), self.pause);
        match std::mem::replace(&mut self.mode, Mode::Detached) {
            Mode::Watched(watched) => {
                self.mode = Mode::Paused {
                    fd: watched.into_inner(),
                    until: Box::pin(tokio::time::sleep_until(until)),
                }
            }
            Mode::Paused {
                fd,
                until: mut sleep,
            } => {
                sleep.as_mut().reset(until);
                self.mode = Mode::Paused { fd, until: sleep };
            }
            Mode::Detached => {}
        }
    }
}

fn watch(fd: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: an `OwnedFd` names the same open descriptor for as long as
    // it lives, and the `AsyncFd` owns it.
    Ok(unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }?)
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
            let to_grid = pipe.gap.is_some() && pipe.waits_for_grid;
            let read = match &mut pipe.mode {
                Mode::Watched(watched) => {
                    let mut ready = ready!(watched.poll_read_ready(cx))?;
                    if to_grid {
                        // Read with the engine host's other pipes, at the
                        // grid's next point.
                        None
                    } else {
                        let wanted = buf.remaining();
                        match ready.try_io(|fd| read_into(fd.get_ref(), buf)) {
                            // A pipe reads short only when that emptied it, and
                            // bytes written later bring a new event: the read
                            // that would only find it empty is saved, one per
                            // command. With a gap, that read is what ends a
                            // round, so it stays.
                            Ok(Ok(n)) if n > 0 && n < wanted && pipe.gap.is_none() => {
                                ready.clear_ready();
                                Some(Ok(n))
                            }
                            Ok(read) => Some(read),
                            Err(_would_block) => Some(Err(io::ErrorKind::WouldBlock.into())),
                        }
                    }
                }
                Mode::Paused { fd, until } => {
                    ready!(until.as_mut().poll(cx));
                    let read = read_into(fd, buf);
                    pipe.learn_from_pause(read.as_ref().ok().copied());
                    Some(read)
                }
                Mode::Detached => {
                    return Poll::Ready(Err(io::Error::other("pipe lost while switching")));
                }
            };
            let Some(read) = read else {
                pipe.pause_until_grid();
                continue;
            };
            match read {
                Ok(n) => {
                    pipe.round += n;
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // A pause that found nothing: wait for bytes instead.
                    if pipe.round == 0 && matches!(pipe.mode, Mode::Paused { .. }) {
                        pipe.waits_for_grid = true;
                        pipe.watch()?;
                    } else {
                        pipe.round_ended()?;
                    }
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::pin::Pin;
    use std::task::Poll;
    use std::time::Duration;

    use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};
    use tokio::time::Instant;

    use super::OutputPipe;
    use crate::engine::read_grid::{grid_after, grid_origin, next_on_grid};

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

    /// The clock is at a point of the grid of `step` (or the timer's next
    /// millisecond tick after it).
    fn assert_on_grid(step: Duration) {
        let now = Instant::now();
        let point = grid_after(now - step, grid_origin(), step);
        assert!(
            now - point < Duration::from_millis(1),
            "{:?} past the grid",
            now - point
        );
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
    async fn what_a_pipe_holds_is_read_at_once_in_reactor_or_paused() {
        let (mut pipe, mut writer) = pipe();
        let mut held = Vec::new();
        pipe.read_held(&mut held).unwrap();
        assert!(held.is_empty(), "an empty pipe reads as nothing, at once");
        // More than one read's worth, while watched by the reactor.
        let bytes: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let writing = std::thread::spawn(move || {
            writer.write_all(&bytes).unwrap();
            (writer, bytes)
        });
        let mut got = Vec::new();
        while got.len() < 100_000 {
            pipe.read_held(&mut got).unwrap();
        }
        let (mut writer, bytes) = writing.join().unwrap();
        assert_eq!(got, bytes);
        // And while out of the reactor, in a pause.
        pipe.read_with_gap(Some(Duration::from_millis(40))).unwrap();
        round(&mut pipe, &mut writer, 10).await;
        writer.write_all(b"tail").unwrap();
        let mut tail = Vec::new();
        pipe.read_held(&mut tail).unwrap();
        assert_eq!(tail, b"tail");
    }

    #[tokio::test]
    async fn after_a_short_read_the_next_bytes_still_wake_the_reader() {
        let (mut pipe, mut writer) = pipe();
        let mut buf = vec![0u8; 1 << 10];
        for line in [&b"one\n"[..], b"two\n", b"three\n"] {
            let late = line.to_vec();
            let writing = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20));
                writer.write_all(&late).unwrap();
                writer
            });
            let n = tokio::time::timeout(Duration::from_secs(5), pipe.read(&mut buf))
                .await
                .expect("bytes written after a short read woke the reader")
                .unwrap();
            assert_eq!(&buf[..n], line);
            writer = writing.join().unwrap();
        }
        drop(writer);
        assert_eq!(pipe.read(&mut buf).await.unwrap(), 0, "the end still reads");
    }

    #[tokio::test(start_paused = true)]
    async fn a_gap_spaces_rounds_of_reading_but_not_a_full_pipe() {
        let (mut pipe, mut writer) = pipe();
        let gap = Duration::from_millis(40);
        assert_eq!(round(&mut pipe, &mut writer, 10).await, Duration::ZERO);
        assert_eq!(round(&mut pipe, &mut writer, 10).await, Duration::ZERO);
        pipe.read_with_gap(Some(gap)).unwrap();
        // Bytes that wake the pipe wait for the grid; each round that
        // found bytes is followed by the gap.
        let first = round(&mut pipe, &mut writer, 10).await;
        assert!(first > Duration::ZERO && first <= gap, "waited {first:?}");
        assert_on_grid(gap);
        assert_eq!(round(&mut pipe, &mut writer, 10).await, gap);
        // A well-filled round is followed by no gap, the next by the gap.
        assert_eq!(round(&mut pipe, &mut writer, 32 << 10).await, gap);
        assert_eq!(round(&mut pipe, &mut writer, 10).await, Duration::ZERO);
        assert_eq!(round(&mut pipe, &mut writer, 10).await, gap);
        // A pause that ends with the pipe full shortens the next ones,
        // until pauses find little again.
        assert_eq!(round(&mut pipe, &mut writer, 64 << 10).await, gap);
        assert_eq!(round(&mut pipe, &mut writer, 10).await, Duration::ZERO);
        for step in [gap / 4, gap / 2, gap] {
            let waited = round(&mut pipe, &mut writer, 10).await;
            assert!(
                waited > Duration::ZERO && waited <= step,
                "waited {waited:?}"
            );
            assert_on_grid(step);
        }
        // A pause that finds nothing leaves the pipe to wake on bytes,
        // which then wait for the grid.
        let mut buf = [0u8; 16];
        let idle = tokio::time::timeout(gap * 4 + gap / 3, pipe.read(&mut buf));
        assert!(idle.await.is_err(), "read bytes nobody wrote");
        let woken = round(&mut pipe, &mut writer, 10).await;
        assert!(woken > Duration::ZERO && woken < gap, "waited {woken:?}");
        assert_on_grid(gap);
        assert_eq!(round(&mut pipe, &mut writer, 10).await, gap);
        // Reading at once again ends the gap under way.
        pipe.read_with_gap(None).unwrap();
        assert_eq!(round(&mut pipe, &mut writer, 10).await, Duration::ZERO);
        assert_eq!(round(&mut pipe, &mut writer, 10).await, Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn pipes_woken_apart_under_a_gap_are_read_together() {
        let gap = Duration::from_millis(25);
        let (mut early, mut early_writer) = pipe();
        let (mut late, mut late_writer) = pipe();
        for _ in 0..3 {
            tokio::time::sleep_until(next_on_grid(Instant::now(), gap) + Duration::from_millis(2))
                .await;
            early.read_with_gap(Some(gap)).unwrap();
            late.read_with_gap(Some(gap)).unwrap();
            let reading_early = round(&mut early, &mut early_writer, 10);
            let reading_late = async {
                tokio::time::sleep(Duration::from_millis(7)).await;
                round(&mut late, &mut late_writer, 10).await
            };
            let (early_waited, late_waited) = tokio::join!(reading_early, reading_late);
            // Both were read at one point of the grid, within a gap.
            assert_eq!(early_waited, Duration::from_millis(7) + late_waited);
            assert_on_grid(gap);
            assert!(late_waited < gap, "late pipe waited {late_waited:?}");
            early.read_with_gap(None).unwrap();
            late.read_with_gap(None).unwrap();
        }
    }
}
