//! Reading `pcl px` output and `pcl up` tables.

use super::*;

/// Assert `pcl px` output in prefixed mode. `expected` is the transcript as
/// one stream (`[stdout:0] a\n[stderr:0] b\n[stdout:1] ...`). pcl may print
/// the `[stderr:N]` lines either on its stdout (one merged stream, which
/// must then equal `expected` exactly) or on its stderr (then its stdout
/// must equal the `[stdout:N]` lines and its stderr must contain the
/// `[stderr:N]` lines in order, besides possible other messages).
#[track_caller]
pub fn assert_px_output(out: &Output, expected: &str) {
    let got = out.stdout_str();
    if got.contains("[stderr:") || !expected.contains("[stderr:") {
        if got != expected {
            out.fail(&format!(
                "px output differs\n--- expected ---\n{expected}--- end expected ---"
            ));
        }
        return;
    }
    let exp_out: String = expected
        .lines()
        .filter(|l| !l.starts_with("[stderr:"))
        .map(|l| format!("{l}\n"))
        .collect();
    let exp_err: Vec<&str> = expected
        .lines()
        .filter(|l| l.starts_with("[stderr:"))
        .collect();
    let got_err: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("[stderr:"))
        .collect();
    if got != exp_out || got_err != exp_err {
        out.fail(&format!(
            "px output differs (stderr lines expected on pcl's stderr)\n--- expected ---\n{expected}--- end expected ---"
        ));
    }
}

/// The `[stdout:ID] ` lines of a px output as (id, text) pairs.
#[track_caller]
pub fn px_stdout_lines(out: &Output) -> Vec<(u32, String)> {
    let mut v = Vec::new();
    for line in out.stdout_str().lines() {
        if let Some(rest) = line.strip_prefix("[stdout:") {
            let Some((id, text)) = rest.split_once("] ").or_else(|| rest.split_once(']')) else {
                out.fail(&format!("malformed prefix in {line:?}"));
            };
            let Ok(id) = id.parse() else {
                out.fail(&format!("malformed engine id in {line:?}"));
            };
            v.push((id, text.to_string()));
        }
    }
    v
}

/// SHA-256 of `data`, lowercase hex (as `sha256sum` prints it).
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, data))
}
