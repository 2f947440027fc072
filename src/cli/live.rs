//! Output lines as they come: each complete line behind its engine's
//! prefix at once, a partial one held until its newline or its engine's
//! end, so lines of different engines interleave but are never cut into
//! one another. The bytes are those `render::prefixed` gives for a whole
//! output.

use std::collections::HashMap;
use std::io::{self, Write};

use crate::protocol::session::Stream;

pub(super) struct Lines {
    pending: HashMap<(u32, Stream), Vec<u8>>,
    /// Past this, a line without its newline yet goes out in pieces (each
    /// prefixed), so one endless line cannot hold everything up.
    max_line: Option<usize>,
}

pub(super) fn prefix(id: u32, stream: Stream) -> String {
    match stream {
        Stream::Stdout => format!("[stdout:{id}] "),
        Stream::Stderr => format!("[stderr:{id}] "),
    }
}

impl Lines {
    pub(super) fn new(max_line: Option<usize>) -> Lines {
        Lines {
            pending: HashMap::new(),
            max_line,
        }
    }

    pub(super) fn feed(
        &mut self,
        out: &mut impl Write,
        id: u32,
        stream: Stream,
        data: &[u8],
    ) -> io::Result<()> {
        let buf = self.pending.entry((id, stream)).or_default();
        buf.extend_from_slice(data);
        let prefix = prefix(id, stream);
        let mut start = 0;
        while let Some(nl) = memchr::memchr(b'\n', &buf[start..]) {
            out.write_all(prefix.as_bytes())?;
            out.write_all(&buf[start..=start + nl])?;
            start += nl + 1;
        }
        if let Some(max) = self.max_line {
            while buf.len() - start >= max {
                out.write_all(prefix.as_bytes())?;
                out.write_all(&buf[start..start + max])?;
                out.write_all(b"\n")?;
                start += max;
            }
        }
        buf.drain(..start);
        Ok(())
    }

    /// The engine's stream ended: a last line without a newline gets one.
    pub(super) fn finish(
        &mut self,
        out: &mut impl Write,
        id: u32,
        stream: Stream,
    ) -> io::Result<()> {
        if let Some(rest) = self.pending.remove(&(id, stream)).filter(|r| !r.is_empty()) {
            out.write_all(prefix(id, stream).as_bytes())?;
            out.write_all(&rest)?;
            out.write_all(b"\n")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::render::prefixed;

    #[test]
    fn lines_fed_in_any_pieces_give_the_bytes_of_the_whole() {
        for whole in [
            &b""[..],
            b"a",
            b"a\n",
            b"a\n\nb",
            b"\n",
            b"one\ntwo\nthree\n",
            b"x\ny",
        ] {
            let mut want = Vec::new();
            prefixed(&mut want, "[stdout:3] ", whole).unwrap();
            for cut in 1..=whole.len().max(1) {
                let mut lines = Lines::new(None);
                let mut got = Vec::new();
                for piece in whole.chunks(cut) {
                    lines.feed(&mut got, 3, Stream::Stdout, piece).unwrap();
                }
                lines.finish(&mut got, 3, Stream::Stdout).unwrap();
                assert_eq!(got, want, "{whole:?} in pieces of {cut}");
            }
        }
    }

    #[test]
    fn engines_interleave_by_whole_lines_and_long_lines_come_in_pieces() {
        let mut lines = Lines::new(Some(4));
        let mut got = Vec::new();
        lines.feed(&mut got, 0, Stream::Stdout, b"ab").unwrap();
        lines.feed(&mut got, 1, Stream::Stdout, b"cd\n").unwrap();
        lines
            .feed(&mut got, 0, Stream::Stdout, b"c\nlonger")
            .unwrap();
        lines.finish(&mut got, 0, Stream::Stdout).unwrap();
        assert_eq!(
            String::from_utf8(got).unwrap(),
            "[stdout:1] cd\n[stdout:0] abc\n[stdout:0] long\n[stdout:0] er\n"
        );
    }
}
