//! The shell quoting rules both sides of a session depend on: bytes as a
//! bash string that means exactly those bytes, and a map item in its
//! command. A leaf: it imports nothing of pcl's.

mod template;

pub(crate) use template::substitute;

/// Quote bytes as a bash ANSI-C string (`$'...'`) that evaluates to exactly
/// those bytes. Everything but plain ASCII letters, digits and a few safe
/// marks is written as `\xHH`, so the result is a single line whatever the
/// input holds and nothing in it can end the quote. NUL cannot be held by
/// any shell string; callers refuse it before quoting.
pub(crate) fn ansi_c_quote(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + 3);
    out.push_str("$'");
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b" _-.,/:=+@%".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::ansi_c_quote;

    #[test]
    fn hostile_bytes_stay_inside_the_quote() {
        let q = ansi_c_quote(b"a'b\n$(x)`y`\\\xff");
        assert_eq!(q, "$'a\\x27b\\x0a\\x24\\x28x\\x29\\x60y\\x60\\x5c\\xff'");
        assert!(!q.contains('\n'));
    }
}
