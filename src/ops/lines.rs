//! Splitting items and lines into contiguous blocks, one per engine, as
//! ipyparallel's `dist='b'` does: sizes differ by at most one and the
//! first `len % n` engines get the larger blocks.

use std::io::{self, Seek, SeekFrom};
use std::path::Path;

use crate::protocol::data::{CHUNK, read_full};

/// How many of `total` items each of `n` engines gets, in engine order.
pub(super) fn block_sizes(total: u64, n: usize) -> Vec<u64> {
    if n == 0 {
        return Vec::new();
    }
    let (base, extra) = (total / n as u64, total % n as u64);
    (0..n as u64).map(|k| base + u64::from(k < extra)).collect()
}

/// Byte ranges (offset, length) of the blocks of `sizes` lines each, in
/// order, covering the file exactly: a second pass that stops at the last
/// boundary.
pub(super) fn block_ranges(
    path: &Path,
    sizes: &[u64],
    total_bytes: u64,
) -> io::Result<Vec<(u64, u64)>> {
    // Boundary k is where the line numbered sum(sizes[..k]) starts.
    let mut targets = Vec::with_capacity(sizes.len());
    let mut sum = 0;
    for size in &sizes[..sizes.len().saturating_sub(1)] {
        sum += size;
        targets.push(sum);
    }
    let mut starts = vec![0u64];
    let mut pending = targets.iter().copied().peekable();
    while pending.next_if_eq(&0).is_some() {
        starts.push(0);
    }
    let mut file = std::fs::File::open(path)?;
    file.seek(SeekFrom::Start(0))?;
    let mut buf = vec![0u8; CHUNK];
    let (mut offset, mut newlines) = (0u64, 0u64);
    'scan: while pending.peek().is_some() {
        let n = read_full(&mut file, &mut buf)?;
        if n == 0 {
            break;
        }
        for at in memchr::memchr_iter(b'\n', &buf[..n]) {
            newlines += 1;
            while pending.next_if_eq(&newlines).is_some() {
                starts.push(offset + at as u64 + 1);
            }
            if pending.peek().is_none() {
                break 'scan;
            }
        }
        offset += n as u64;
    }
    // Boundaries past the last newline (a last line without one) fall at
    // the end.
    starts.extend(pending.map(|_| total_bytes));
    starts.truncate(sizes.len());
    let mut ranges = Vec::with_capacity(sizes.len());
    for (k, &start) in starts.iter().enumerate() {
        let end = starts.get(k + 1).copied().unwrap_or(total_bytes);
        ranges.push((start, end - start));
    }
    Ok(ranges)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::data::count_lines;
    use std::io::Write;

    #[test]
    fn sizes_like_ipyparallel() {
        assert_eq!(block_sizes(16, 4), vec![4, 4, 4, 4]);
        assert_eq!(block_sizes(10, 4), vec![3, 3, 2, 2]);
        assert_eq!(block_sizes(2, 4), vec![1, 1, 0, 0]);
        assert_eq!(block_sizes(0, 3), vec![0, 0, 0]);
        assert_eq!(block_sizes(100_001, 7).iter().sum::<u64>(), 100_001);
        assert_eq!(block_sizes(5, 0), Vec::<u64>::new());
        for total in 0..50 {
            for n in 1..9 {
                let s = block_sizes(total, n);
                assert_eq!(s.iter().sum::<u64>(), total);
                assert!(s.windows(2).all(|w| w[0] >= w[1] && w[0] - w[1] <= 1));
            }
        }
    }

    fn split(text: &[u8], n: usize) -> Vec<Vec<u8>> {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text).unwrap();
        let count = count_lines(&mut std::fs::File::open(f.path()).unwrap()).unwrap();
        assert_eq!(count.bytes, text.len() as u64);
        let sizes = block_sizes(count.lines, n);
        let ranges = block_ranges(f.path(), &sizes, count.bytes).unwrap();
        assert_eq!(ranges.len(), n);
        ranges
            .iter()
            .map(|&(o, l)| text[o as usize..(o + l) as usize].to_vec())
            .collect()
    }

    #[test]
    fn counts_lines() {
        let count = |t: &[u8]| count_lines(&mut &t[..]).unwrap();
        assert_eq!(count(b"").lines, 0);
        assert_eq!(count(b"a").lines, 1);
        assert_eq!(count(b"a\n").lines, 1);
        assert_eq!(count(b"a\n\nb").lines, 3);
        assert_eq!(count(b"a\nb\0c\n").nul_line, Some(2));
        assert_eq!(count(b"a\n").nul_line, None);
    }

    #[test]
    fn ranges_cover_whole_lines() {
        assert_eq!(
            split(b"1\n2\n3\n4\n5\n", 2),
            vec![b"1\n2\n3\n".to_vec(), b"4\n5\n".to_vec()]
        );
        assert_eq!(
            split(b"1\n2\n3", 3),
            vec![b"1\n".to_vec(), b"2\n".to_vec(), b"3".to_vec()]
        );
        assert_eq!(split(b"a\n", 3), vec![b"a\n".to_vec(), vec![], vec![]]);
        assert_eq!(split(b"", 2), vec![Vec::<u8>::new(), vec![]]);
        assert_eq!(split(b"\n\n\n", 2), vec![b"\n\n".to_vec(), b"\n".to_vec()]);
        // Many lines across chunk boundaries: the blocks join back exactly.
        let mut big = Vec::new();
        for i in 0..300_000u32 {
            big.extend_from_slice(format!("line {i}\n").as_bytes());
        }
        big.extend_from_slice(b"tail without newline");
        for n in [1, 3, 7] {
            let parts = split(&big, n);
            assert_eq!(parts.concat(), big);
            let lines: Vec<usize> = parts
                .iter()
                .map(|p| count_lines(&mut &p[..]).unwrap().lines as usize)
                .collect();
            assert_eq!(
                lines,
                block_sizes(300_001, n)
                    .iter()
                    .map(|&s| s as usize)
                    .collect::<Vec<_>>()
            );
        }
    }
}
