//! Turning engine results into text: `[stdout:ID] ` prefixes, dshbak-style
//! groups, JSON.

use std::io::{self, Write};

use serde::Serialize;

use crate::config::NodeSet;
use crate::session::fold_ids;

/// One engine's finished result, as the CLI shows it.
#[derive(Debug, Clone, Serialize)]
pub(super) struct EngineResult {
    pub id: u32,
    pub host: String,
    pub status: i32,
    #[serde(serialize_with = "lossy")]
    pub stdout: Vec<u8>,
    #[serde(serialize_with = "lossy")]
    pub stderr: Vec<u8>,
    pub note: Option<String>,
}

fn lossy<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&String::from_utf8_lossy(bytes))
}

/// Every line of `bytes` behind `prefix`; a last line without a newline
/// still ends with one, so the next prefix starts a line.
pub(super) fn prefixed(out: &mut impl Write, prefix: &str, bytes: &[u8]) -> io::Result<()> {
    if bytes.is_empty() {
        return Ok(());
    }
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    for line in body.split(|&b| b == b'\n') {
        out.write_all(prefix.as_bytes())?;
        out.write_all(line)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// pcl's own word about an engine (a timeout, a dead engine), on stderr.
pub(super) fn note(result: &EngineResult) {
    if let Some(note) = &result.note {
        eprintln!("pcl: engine {} ({}): {note}", result.id, result.host);
    }
}

/// dshbak's divider: 16 dashes.
const DIVIDER: &str = "----------------";

/// `-b`: engines with the same stdout share one block, like `dshbak -c`:
/// a divider, the engines' ids (`7`, or folded as `[0-3,5]`) and their
/// hosts folded as `nodeset -f` folds them, a divider, then the output.
/// Engines that printed nothing get no block. Output that does not end in
/// a newline is followed by a `(no newline at end)` line, so `x` and
/// `x\n` do not look alike.
pub(super) fn grouped(out: &mut impl Write, results: &[EngineResult]) -> io::Result<()> {
    let mut groups: Vec<(&[u8], Vec<&EngineResult>)> = Vec::new();
    for r in results.iter().filter(|r| !r.stdout.is_empty()) {
        match groups
            .iter_mut()
            .find(|(stdout, _)| *stdout == r.stdout.as_slice())
        {
            Some((_, members)) => members.push(r),
            None => groups.push((&r.stdout, vec![r])),
        }
    }
    for (stdout, members) in groups {
        let ids: Vec<u32> = members.iter().map(|r| r.id).collect();
        let ids = match ids[..] {
            [id] => id.to_string(),
            _ => format!("[{}]", fold_ids(&ids)),
        };
        let hosts = NodeSet::from_names(members.iter().map(|r| r.host.as_str())).fold();
        writeln!(out, "{DIVIDER}\n{ids} {hosts}\n{DIVIDER}")?;
        out.write_all(stdout)?;
        if !stdout.ends_with(b"\n") {
            out.write_all(b"\n(no newline at end)\n")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(id: u32, host: &str, stdout: &str) -> EngineResult {
        EngineResult {
            id,
            host: host.into(),
            status: 0,
            stdout: stdout.into(),
            stderr: Vec::new(),
            note: None,
        }
    }

    #[test]
    fn prefixes_every_line_and_ends_the_last() {
        let mut out = Vec::new();
        prefixed(&mut out, "[stdout:3] ", b"a\n\nb").unwrap();
        assert_eq!(out, b"[stdout:3] a\n[stdout:3] \n[stdout:3] b\n");
    }

    #[test]
    fn groups_identical_outputs_like_dshbak() {
        let mut out = Vec::new();
        let results = [
            result(0, "node01", "x\n"),
            result(1, "node01", "y\n"),
            result(2, "node02", "x\n"),
            result(3, "node02", ""),
            result(4, "node03", "x\n"),
        ];
        grouped(&mut out, &results).unwrap();
        let text = String::from_utf8(out).unwrap();
        let div = "-".repeat(16);
        assert_eq!(
            text,
            format!("{div}\n[0,2,4] node[01-03]\n{div}\nx\n{div}\n1 node01\n{div}\ny\n")
        );
    }

    #[test]
    fn says_when_output_has_no_newline_at_end() {
        let mut out = Vec::new();
        let results = [result(0, "a", "x"), result(1, "a", "x\n")];
        grouped(&mut out, &results).unwrap();
        let text = String::from_utf8(out).unwrap();
        let div = "-".repeat(16);
        assert_eq!(
            text,
            format!("{div}\n0 a\n{div}\nx\n(no newline at end)\n{div}\n1 a\n{div}\nx\n")
        );
    }
}
