//! Finding the end of one command's output in a shell's stream. After each
//! command the shell prints a random per-command marker, then the status
//! and the shell's flags; everything before it is the command's output,
//! byte for byte.

use std::cell::RefCell;

use memchr::memmem;

use super::shell::random_bytes;

pub(super) struct MarkerScanner {
    marker: Vec<u8>,
    pending: Vec<u8>,
    after: Option<Vec<u8>>,
}

impl MarkerScanner {
    pub(super) fn new(marker: &[u8]) -> Self {
        Self {
            marker: marker.to_vec(),
            pending: Vec::new(),
            after: None,
        }
    }

    /// Feed bytes read from the stream; returns the part now known to be
    /// command output. Only an end that could begin the marker is held
    /// back, so output that cannot be part of it goes on at once (a line
    /// printed live is seen live).
    pub(super) fn feed(&mut self, data: &[u8]) -> Vec<u8> {
        if let Some(after) = &mut self.after {
            after.extend_from_slice(data);
            return Vec::new();
        }
        self.pending.extend_from_slice(data);
        if let Some(i) = memmem::find(&self.pending, &self.marker) {
            self.after = Some(self.pending[i + self.marker.len()..].to_vec());
            self.pending.truncate(i);
            return std::mem::take(&mut self.pending);
        }
        let longest = self.pending.len().min(self.marker.len() - 1);
        let keep = (1..=longest)
            .rev()
            .find(|&k| self.pending.ends_with(&self.marker[..k]))
            .unwrap_or(0);
        let emit = self.pending.len() - keep;
        self.pending.drain(..emit).collect()
    }

    /// Bytes seen after the marker, once it was found.
    pub(super) fn after(&self) -> Option<&[u8]> {
        self.after.as_deref()
    }

    /// What is held back, when the stream ends without a marker.
    pub(super) fn into_rest(self) -> Vec<u8> {
        self.pending
    }
}

/// A command's end marker: 64 random bits, which no output can guess or
/// hit by chance, as 11 letters and digits (bash reads each byte of it
/// with a system call of its own; hex would take 16).
pub(super) fn marker_token() -> String {
    const DIGITS: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut bits = random_word();
    (0..11)
        .map(|_| {
            let digit = DIGITS[(bits % 62) as usize] as char;
            bits /= 62;
            digit
        })
        .collect()
}

/// Random words drawn from the system this many at a time: a `getrandom`
/// for every command was one of the few system calls each engine's part
/// of a px costs the engine host.
const POOL_WORDS: usize = 64;

fn random_word() -> u64 {
    thread_local! {
        static POOL: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
    }
    POOL.with_borrow_mut(|pool| {
        if pool.is_empty() {
            let bytes = random_bytes::<{ POOL_WORDS * 8 }>();
            pool.extend(
                bytes
                    .chunks_exact(8)
                    .map(|w| u64::from_le_bytes(w.try_into().expect("8 bytes"))),
            );
        }
        pool.pop().expect("the pool was just filled")
    })
}

/// One command's stdout, cut at its marker.
pub(super) struct CommandEnd {
    pub(super) out: MarkerScanner,
}

impl CommandEnd {
    pub(super) fn new(token: &str) -> CommandEnd {
        CommandEnd {
            out: MarkerScanner::new(token.as_bytes()),
        }
    }

    /// Stdout's marker line (with the status) is not complete yet.
    pub(super) fn wants_stdout(&self) -> bool {
        !self.out.after().is_some_and(|a| a.contains(&b'\n'))
    }

    /// The command's status and whether job control is still on, once
    /// its marker line is in.
    pub(super) fn end(&self) -> Option<(i32, bool)> {
        parse_end(self.out.after()?)
    }
}

/// What follows the marker: `STATUS FLAGS\n`.
fn parse_end(after: &[u8]) -> Option<(i32, bool)> {
    let line = &after[..after.iter().position(|&b| b == b'\n')?];
    let (status, flags) = std::str::from_utf8(line).ok()?.split_once(' ')?;
    Some((status.parse().ok()?, flags.contains('m')))
}

#[cfg(test)]
mod tests {
    use super::{MarkerScanner, marker_token, parse_end};

    #[test]
    fn marker_split_across_reads() {
        let mut s = MarkerScanner::new(b"MARK");
        let mut out = s.feed(b"helloMA");
        assert!(s.after().is_none());
        out.extend(s.feed(b"RK0\n"));
        assert_eq!(out, b"hello");
        assert_eq!(s.after(), Some(&b"0\n"[..]));
    }

    #[test]
    fn output_that_cannot_begin_the_marker_is_not_held_back() {
        let mut s = MarkerScanner::new(b"MARK");
        assert_eq!(s.feed(b"x:1\n"), b"x:1\n");
        assert_eq!(s.feed(b"xxM"), b"xx");
        assert_eq!(s.feed(b"Z"), b"MZ");
        assert_eq!(s.feed(b"MA"), b"");
        assert_eq!(s.feed(b"RK0\n"), b"");
        assert_eq!(s.after(), Some(&b"0\n"[..]));
    }

    #[test]
    fn partial_prefix_that_is_not_the_marker_is_output() {
        let mut s = MarkerScanner::new(b"MARK");
        let mut out = s.feed(b"xxMA");
        out.extend(s.feed(b"Zyy"));
        out.extend(s.into_rest());
        assert_eq!(out, b"xxMAZyy");
    }

    #[test]
    fn the_end_line_gives_the_status_and_whether_job_control_is_on() {
        assert_eq!(parse_end(b"0 hmBs\n"), Some((0, true)));
        assert_eq!(parse_end(b"130 hBs\n"), Some((130, false)));
        assert_eq!(parse_end(b"0 hmB"), None, "the line is not complete");
        assert_eq!(parse_end(b"x hmB\n"), None);
    }

    #[test]
    fn a_marker_token_is_11_letters_and_digits_and_new_each_time() {
        let a = marker_token();
        assert_eq!(a.len(), 11);
        assert!(a.bytes().all(|b| b.is_ascii_alphanumeric()), "{a}");
        assert_ne!(a, marker_token());
    }

    #[test]
    fn marker_tokens_stay_distinct_across_refills_of_the_pool() {
        let tokens: std::collections::HashSet<String> =
            (0..super::POOL_WORDS * 3).map(|_| marker_token()).collect();
        assert_eq!(tokens.len(), super::POOL_WORDS * 3);
    }
}
