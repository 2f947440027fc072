//! The engine host's stdin and stdout as the byte streams of its channel.
//! Where they are pipes or sockets (as ssh, srun and the local daemon
//! give), they are read and written without blocking, so that a datagram
//! does not take a trip through tokio's blocking pool each way.

use std::fs::File;
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::fs::FileTypeExt;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::unix::pipe;

pub(super) type Reader = Box<dyn AsyncRead + Unpin + Send>;
pub(super) type Writer = Box<dyn AsyncWrite + Unpin + Send>;

/// A non-blocking copy of `fd` if epoll can watch it.
fn pollable(fd: RawFd) -> Option<File> {
    // SAFETY: fcntl on a descriptor of ours; the duplicate is owned by
    // the File from here on.
    let file = unsafe {
        let copy = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3);
        if copy < 0 {
            return None;
        }
        File::from_raw_fd(copy)
    };
    let kind = file.metadata().ok()?.file_type();
    if !(kind.is_fifo() || kind.is_socket()) {
        return None;
    }
    // SAFETY: as above. O_NONBLOCK is on the open file, which only this
    // process's end shares.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return None;
        }
    }
    Some(file)
}

pub(super) fn stdin() -> Reader {
    match pollable(libc::STDIN_FILENO).and_then(|f| pipe::Receiver::from_file_unchecked(f).ok()) {
        Some(pipe) => Box::new(pipe),
        None => Box::new(tokio::io::stdin()),
    }
}

/// Only once nothing else writes to stdout (the handshake line is out).
pub(super) fn stdout() -> Writer {
    match pollable(libc::STDOUT_FILENO).and_then(|f| pipe::Sender::from_file_unchecked(f).ok()) {
        Some(pipe) => Box::new(pipe),
        None => Box::new(tokio::io::stdout()),
    }
}
