//! The daemon's part of a relayed stream: the bulk stream of the local
//! file, from any byte of it on, for the first host or for one whose
//! upstream was lost. The digest at its end covers the whole file, so
//! the bytes before the start are read too (locally, not sent).

use std::io::{self, Read};
use std::path::Path;

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::protocol::data::{
    Bulk, CHUNK, Checksum, chunk_header, open_regular, read_full, stream_position,
};
use crate::transport::encode_frame;

/// Send the bulk stream of the first `size` bytes of `path` into `queue`,
/// from its byte `from` on. Runs on a blocking thread; a closed queue
/// ends it early.
pub(super) fn feed_from(
    path: &Path,
    size: u64,
    from: u64,
    queue: &mpsc::Sender<Bytes>,
) -> io::Result<()> {
    let mut file = open_regular(path)?.take(size);
    let (start, skip) = stream_position(from, size);
    let mut digest = Checksum::new();
    let mut buf = vec![0u8; CHUNK];
    let mut passed = 0u64;
    while passed < start {
        let want = (start - passed).min(CHUNK as u64) as usize;
        let n = read_full(&mut file, &mut buf[..want])?;
        if n == 0 {
            break;
        }
        digest.update(&buf[..n]);
        passed += n as u64;
    }
    let mut stream = Skipping { queue, skip };
    loop {
        let mut buf = vec![0u8; CHUNK];
        let n = read_full(&mut file, &mut buf)?;
        if n == 0 {
            break;
        }
        buf.truncate(n);
        digest.update(&buf);
        if !stream.send(Bytes::from(chunk_header(n))) || !stream.send(Bytes::from(buf)) {
            return Ok(());
        }
    }
    let end = encode_frame(&Bulk::End(digest.digest())).map_err(io::Error::other)?;
    stream.send(Bytes::from(end));
    Ok(())
}

/// The stream's pieces into a queue, less its first `skip` bytes.
struct Skipping<'a> {
    queue: &'a mpsc::Sender<Bytes>,
    skip: u64,
}

impl Skipping<'_> {
    /// `false` once the queue is closed.
    fn send(&mut self, mut piece: Bytes) -> bool {
        let skip = self.skip.min(piece.len() as u64);
        self.skip -= skip;
        let _ = piece.split_to(skip as usize);
        piece.is_empty() || self.queue.blocking_send(piece).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stream from byte `from`, as one buffer.
    fn stream_from(path: &Path, size: u64, from: u64) -> Vec<u8> {
        let (tx, mut rx) = mpsc::channel(1 << 12);
        feed_from(path, size, from, &tx).unwrap();
        drop(tx);
        let mut all = Vec::new();
        while let Ok(piece) = rx.try_recv() {
            all.extend_from_slice(&piece);
        }
        all
    }

    #[test]
    fn a_stream_taken_up_anywhere_goes_on_with_the_same_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let bytes: Vec<u8> = (0..(2 * CHUNK + 1234))
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        std::fs::write(&path, &bytes).unwrap();
        let size = bytes.len() as u64;
        let whole = stream_from(&path, size, 0);
        let frame = (chunk_header(CHUNK).len() + CHUNK) as u64;
        for from in [
            1,
            4,
            frame - 1,
            frame,
            frame + 9,
            2 * frame + 1200,
            whole.len() as u64 - 3,
        ] {
            assert_eq!(
                stream_from(&path, size, from),
                whole[from as usize..],
                "from byte {from}"
            );
        }
    }
}
