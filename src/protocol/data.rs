//! Data movement (push, pull, scatter, gather): the requests the CLI sends,
//! what the daemon sends engines, and the checks every role applies to
//! names and paths before they get near a shell or a file system.

use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Bulk bytes travel in frames carrying at most this much.
pub const CHUNK: usize = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DataError {
    #[error(
        "invalid variable name `{0}`: use a shell identifier (letters, digits and `_`, not starting with a digit)"
    )]
    BadName(String),
    #[error("`{0}` is not NAME=VALUE")]
    NotAssignment(String),
    #[error("remote path `{0}` must be relative to the engine's workdir (no leading `/`)")]
    AbsolutePath(String),
    #[error("remote path `{0}` must not contain `..`")]
    ParentDir(String),
    #[error("remote path `{0}` names no file")]
    EmptyPath(String),
    #[error(
        "remote path `{0}`: {1}; `{{id}}` and `{{host}}` name the engine and its host, `{{{{` and `}}}}` are literal braces"
    )]
    BadTemplate(String, String),
    #[error("{0} contains a NUL byte, which no shell variable can hold")]
    Nul(String),
}

/// A shell identifier: `^[A-Za-z_][A-Za-z0-9_]*$`.
pub fn check_name(name: &str) -> Result<(), DataError> {
    let mut bytes = name.bytes();
    let ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(DataError::BadName(name.to_string()))
    }
}

/// `NAME=VALUE` split at the first `=`, the name checked.
pub fn split_assignment(arg: &[u8]) -> Result<(String, Vec<u8>), DataError> {
    let lossy = || String::from_utf8_lossy(arg).into_owned();
    let eq = memchr::memchr(b'=', arg).ok_or_else(|| DataError::NotAssignment(lossy()))?;
    let name = std::str::from_utf8(&arg[..eq]).map_err(|_| DataError::BadName(lossy()))?;
    check_name(name)?;
    Ok((name.to_string(), arg[eq + 1..].to_vec()))
}

/// A REMOTE path: relative, without `..`, naming a file. Returns it
/// normalised (no `.` components, no trailing `/`).
pub fn check_remote(path: &str) -> Result<PathBuf, DataError> {
    let p = Path::new(path);
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir => return Err(DataError::ParentDir(path.into())),
            Component::RootDir | Component::Prefix(_) => {
                return Err(DataError::AbsolutePath(path.into()));
            }
        }
    }
    if out.as_os_str().is_empty() || path.ends_with('/') {
        return Err(DataError::EmptyPath(path.into()));
    }
    Ok(out)
}

/// Where the bytes of a file-like source come from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Source {
    /// A local file the daemon opens itself (same machine, same user).
    Path(PathBuf),
    /// The CLI's stdin, sent after the request as `Request::Chunk` frames
    /// ended by `Request::Eof`.
    Stdin,
}

/// What to scatter: items given on the command line, or the lines of a
/// source.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Items {
    Args(Vec<serde_bytes::ByteBuf>),
    Lines(Source),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum DataRequest {
    PushVars {
        targets: String,
        vars: Vec<(String, serde_bytes::ByteBuf)>,
    },
    PullVars {
        targets: String,
        names: Vec<String>,
        /// `--raw`: refuse unless exactly one engine is targeted.
        single: bool,
    },
    ScatterVar {
        targets: String,
        name: String,
        items: Items,
    },
    GatherVar {
        targets: String,
        name: String,
    },
    PushFile {
        targets: String,
        from: Source,
        remote: String,
    },
    PullFile {
        targets: String,
        remote: String,
        dest: PathBuf,
    },
    ScatterFile {
        targets: String,
        remote: String,
        from: Source,
    },
    GatherFile {
        targets: String,
        remote: String,
    },
}

/// Daemon -> engine: the first frame of a data stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum EngineData {
    /// Assign these variables; answered by `Stored`.
    SetVars {
        id: u32,
        vars: Vec<(String, serde_bytes::ByteBuf)>,
    },
    /// The value of a variable (`array`: every element, each ended by a
    /// NUL); answered by `Data` chunks then `DataEnd`.
    GetVar { id: u32, name: String, array: bool },
    /// `Chunk` frames then `End` follow; the bytes become the array `name`,
    /// split at NULs (`nul`) or at newlines. Answered by `Stored`.
    LoadArray { id: u32, name: String, nul: bool },
    /// `Chunk` frames then `End` follow; the bytes become the file `path`
    /// (relative to the workdir), atomically. Answered by `Stored`.
    WriteFile { id: u32, path: String },
    /// The bytes of the file `path`: `Data` chunks then `DataEnd`.
    ReadFile { id: u32, path: String },
    /// `WriteFile`, the bytes coming from a peer and passed on (see
    /// `protocol::relay`).
    RelayFile(super::relay::RelayFile),
}

/// The checksum of the bytes sent, checked by the receiver.
pub type Digest = [u8; 16];

/// The end-to-end check of streamed bytes: XXH3-128 of all of them. QUIC
/// already authenticates every packet, so this guards against what could
/// go wrong between the two ends' files (a chunk lost, repeated or out of
/// order), not an attacker; a cryptographic hash would cost more CPU than
/// the transfer's encryption.
pub struct Checksum(xxhash_rust::xxh3::Xxh3);

impl Checksum {
    pub fn new() -> Checksum {
        Checksum(xxhash_rust::xxh3::Xxh3::new())
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    pub fn digest(&self) -> Digest {
        self.0.digest128().to_be_bytes()
    }
}

impl Default for Checksum {
    fn default() -> Checksum {
        Checksum::new()
    }
}

/// Daemon -> engine, after a bulk `EngineData` request: the bytes, then
/// their digest. Its own type (not `EngineRequest`) so that a chunk can be
/// decoded in place, borrowing from the frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Bulk<'a> {
    Chunk(#[serde(with = "serde_bytes")] &'a [u8]),
    End(Digest),
}

/// The frame of `Bulk::Chunk` of `len` bytes, up to the bytes themselves:
/// sent before them, it spares copying them into the frame (the same
/// bytes often go to many engines).
pub fn chunk_header(len: usize) -> Vec<u8> {
    let empty = postcard::to_stdvec(&Bulk::Chunk(&[])).expect("encodes");
    // `empty` is the variant tag, then the length 0 as a varint (one byte).
    let tag = &empty[..empty.len() - 1];
    let varint = postcard::to_stdvec(&len).expect("encodes");
    let body = tag.len() + varint.len() + len;
    let mut header = (body as u32).to_be_bytes().to_vec();
    header.extend_from_slice(tag);
    header.extend_from_slice(&varint);
    header
}

/// Where the bulk stream of a file of `size` bytes, cut into `CHUNK`
/// frames as senders cut it, is at its byte `at`: the file offset of the
/// frame holding that byte, and how far into the frames from there.
/// The stream is a function of the file's bytes alone, so a sender can
/// take it up again at any byte another sender stopped at.
pub fn stream_position(at: u64, size: u64) -> (u64, u64) {
    let frame = (chunk_header(CHUNK).len() + CHUNK) as u64;
    let full_frames = size / CHUNK as u64;
    let frame_index = (at / frame).min(full_frames);
    (frame_index * CHUNK as u64, at - frame_index * frame)
}

/// Fill `buf` as far as `source` goes, so bulk data travels in few, full
/// frames; 0 only at the end.
pub fn read_full(source: &mut impl std::io::Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match source.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Open LOCAL for reading only if it is a regular file. The open itself
/// never blocks (a FIFO with no writer would hang it for ever), and the
/// type is checked on what was opened, not on a name that could change.
pub fn open_regular(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        let what = if meta.is_dir() {
            "a directory"
        } else {
            "not a regular file"
        };
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{what}; give a pipe or a stream as `-` (stdin)"),
        ));
    }
    Ok(file)
}

/// What a first pass over a file found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineCount {
    pub lines: u64,
    pub bytes: u64,
    /// The 1-based line of the first NUL byte, if any.
    pub nul_line: Option<u64>,
}

/// Count the lines of `file` (a last line without a newline counts),
/// reading it once in chunks.
pub fn count_lines(file: &mut impl std::io::Read) -> std::io::Result<LineCount> {
    let mut buf = vec![0u8; CHUNK];
    let (mut newlines, mut bytes, mut nul_line, mut last) = (0u64, 0u64, None, b'\n');
    loop {
        let n = read_full(file, &mut buf)?;
        if n == 0 {
            break;
        }
        let chunk = &buf[..n];
        if nul_line.is_none() {
            if let Some(at) = memchr::memchr(0, chunk) {
                nul_line =
                    Some(newlines + memchr::memchr_iter(b'\n', &chunk[..at]).count() as u64 + 1);
            }
        }
        newlines += memchr::memchr_iter(b'\n', chunk).count() as u64;
        bytes += n as u64;
        last = chunk[n - 1];
    }
    Ok(LineCount {
        lines: newlines + u64::from(last != b'\n'),
        bytes,
        nul_line,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_nul_is_found_with_its_line() {
        let nul_line = |bytes: &[u8]| count_lines(&mut &bytes[..]).unwrap().nul_line;
        assert_eq!(nul_line(b"a\nb\n"), None);
        assert_eq!(nul_line(b"x\0y\n"), Some(1));
        assert_eq!(nul_line(b"a\nb\nc\0\n\0"), Some(3));
        // Past the first read's block.
        let mut long = b"line\n".repeat(300_000);
        long.extend(b"\0");
        assert_eq!(nul_line(&long), Some(300_001));
    }

    #[test]
    fn the_checksum_sees_chunks_lost_repeated_or_reordered() {
        let sum = |chunks: &[&[u8]]| {
            let mut checksum = Checksum::new();
            for chunk in chunks {
                checksum.update(chunk);
            }
            checksum.digest()
        };
        let sent = sum(&[b"abc", b"def"]);
        assert_eq!(sent, sum(&[b"ab", b"cdef"]), "chunking does not matter");
        assert_ne!(sent, sum(&[b"abc"]));
        assert_ne!(sent, sum(&[b"abc", b"abc", b"def"]));
        assert_ne!(sent, sum(&[b"def", b"abc"]));
    }

    #[test]
    fn names() {
        for ok in ["a", "_", "A_1", "_x9", "abc_DEF"] {
            assert_eq!(check_name(ok), Ok(()), "{ok}");
        }
        for bad in ["", "1a", "a-b", "a;rm -rf x", "a b", "é", "a=", "$a", "a\n"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn assignments() {
        assert_eq!(
            split_assignment(b"x=a=b").unwrap(),
            ("x".into(), b"a=b".to_vec())
        );
        assert_eq!(split_assignment(b"x=").unwrap(), ("x".into(), vec![]));
        assert!(matches!(
            split_assignment(b"a;rm -rf x=1"),
            Err(DataError::BadName(_))
        ));
        assert!(matches!(
            split_assignment(b"novalue"),
            Err(DataError::NotAssignment(_))
        ));
    }

    #[test]
    fn chunk_header_matches_the_frame() {
        for len in [0usize, 1, 127, 128, 300, CHUNK] {
            let data = vec![7u8; len];
            let frame = crate::transport::encode_frame(&Bulk::Chunk(&data)).unwrap();
            let mut split = chunk_header(len);
            split.extend_from_slice(&data);
            assert_eq!(split, frame, "len {len}");
        }
    }

    #[test]
    fn a_stream_position_maps_back_to_its_frame() {
        let frame = (chunk_header(CHUNK).len() + CHUNK) as u64;
        let size = 3 * CHUNK as u64 + 10;
        assert_eq!(stream_position(0, size), (0, 0));
        assert_eq!(stream_position(5, size), (0, 5));
        assert_eq!(stream_position(frame, size), (CHUNK as u64, 0));
        assert_eq!(stream_position(2 * frame + 7, size), (2 * CHUNK as u64, 7));
        // In the last, short frame or the end frame: from the last chunk.
        assert_eq!(
            stream_position(3 * frame + 20, size),
            (3 * CHUNK as u64, 20)
        );
        // A file of whole chunks: the end frame follows the last one.
        let whole = 2 * CHUNK as u64;
        assert_eq!(stream_position(2 * frame + 3, whole), (whole, 3));
    }

    #[test]
    fn remote_paths() {
        assert_eq!(check_remote("a/./b").unwrap(), PathBuf::from("a/b"));
        assert_eq!(check_remote("./x").unwrap(), PathBuf::from("x"));
        assert!(matches!(
            check_remote("/etc/passwd"),
            Err(DataError::AbsolutePath(_))
        ));
        assert!(matches!(
            check_remote("a/../b"),
            Err(DataError::ParentDir(_))
        ));
        assert!(matches!(check_remote(".."), Err(DataError::ParentDir(_))));
        assert!(matches!(check_remote(""), Err(DataError::EmptyPath(_))));
        assert!(matches!(check_remote("."), Err(DataError::EmptyPath(_))));
        assert!(matches!(check_remote("dir/"), Err(DataError::EmptyPath(_))));
    }
}
