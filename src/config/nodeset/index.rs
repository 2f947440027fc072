//! One index of a range, kept as ClusterShell 1.9 keeps it: a number and
//! the width it is written with, so `7`, `07` and `007` are three indexes.

use std::cmp::Ordering;
use std::fmt;

/// A number as written in a host name: its value and the length of its
/// text (more than the digits when zero-padded, as in `007`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct Index {
    value: i128,
    width: usize,
}

fn natural_width(value: i128) -> usize {
    value.to_string().len()
}

impl Index {
    /// `value` written with at least `pad` digits (`pad` 0: as is).
    pub(super) fn new(value: i128, pad: usize) -> Index {
        let width = if value < 0 {
            natural_width(value)
        } else {
            natural_width(value).max(pad)
        };
        Index { value, width }
    }

    pub(super) fn value(self) -> i128 {
        self.value
    }

    /// Zero-padded beyond its digits (`00`, `07`; not `0` or `10`).
    pub(super) fn padded(self) -> bool {
        self.width > natural_width(self.value)
    }

    pub(super) fn width(self) -> usize {
        self.width
    }
}

impl fmt::Display for Index {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        if self.value < 0 {
            write!(f, "{}", self.value)
        } else {
            write!(f, "{:0width$}", self.value, width = self.width)
        }
    }
}

/// ClusterShell's order: shorter texts first, then by value (which, for
/// texts of one length, is their text order); negative numbers before
/// all others, longest first.
impl Ord for Index {
    fn cmp(&self, other: &Index) -> Ordering {
        let key = |i: &Index| {
            let width = i.width as i64;
            (if i.value < 0 { -width } else { width }, i.value)
        };
        key(self).cmp(&key(other))
    }
}

impl PartialOrd for Index {
    fn partial_cmp(&self, other: &Index) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Python's whitespace, which ClusterShell strips around ranges and names.
pub(super) fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\x1c'..='\x1f').contains(&c)
}

pub(super) fn py_strip(s: &str) -> &str {
    s.trim_matches(is_py_space)
}

/// A whole number as Python's `int()` reads text: surrounding whitespace,
/// one optional sign, ASCII digits with single `_` between them. `None`
/// for anything else, and for numbers beyond what pcl keeps (`i128`).
pub(super) fn py_int(text: &str) -> Option<i128> {
    let s = py_strip(text);
    let (negative, digits) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let bytes = digits.as_bytes();
    let well_formed = !bytes.is_empty()
        && bytes.first().is_some_and(u8::is_ascii_digit)
        && bytes.last().is_some_and(u8::is_ascii_digit)
        && bytes.iter().all(|b| b.is_ascii_digit() || *b == b'_')
        && !digits.contains("__");
    if !well_formed {
        return None;
    }
    let value: i128 = digits.replace('_', "").parse().ok()?;
    Some(if negative { -value } else { value })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_and_text() {
        let mut v = [
            Index::new(10, 0),
            Index::new(7, 2),
            Index::new(9, 0),
            Index::new(-1, 0),
            Index::new(-10, 0),
            Index::new(0, 0),
        ];
        v.sort();
        let text: Vec<String> = v.iter().map(|i| i.to_string()).collect();
        assert_eq!(text, ["-10", "-1", "0", "9", "07", "10"]);
        assert!(Index::new(0, 2).padded());
        assert!(!Index::new(10, 2).padded());
        assert_eq!(Index::new(10, 2), Index::new(10, 0));
    }

    #[test]
    fn ints_as_python_reads_them() {
        assert_eq!(py_int(" 12 "), Some(12));
        assert_eq!(py_int("+3"), Some(3));
        assert_eq!(py_int("1_000"), Some(1000));
        assert_eq!(py_int("-0"), Some(0));
        for bad in ["", "_1", "1_", "1__0", "0x1", "1.0", "- 1", "a"] {
            assert_eq!(py_int(bad), None, "{bad:?}");
        }
    }
}
