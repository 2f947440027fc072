//! Turning engine results into text: `[stdout:ID] ` prefixes, dshbak-style
//! groups, JSON.

use std::io::{self, Write};

use serde::Serialize;

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

/// `-b`: engines with the same stdout share one block, headed by their
/// folded ids, like `dshbak -c`.
pub(super) fn grouped(out: &mut impl Write, results: &[EngineResult]) -> io::Result<()> {
    let mut groups: Vec<(&[u8], Vec<u32>)> = Vec::new();
    for r in results {
        match groups
            .iter_mut()
            .find(|(stdout, _)| *stdout == r.stdout.as_slice())
        {
            Some((_, ids)) => ids.push(r.id),
            None => groups.push((&r.stdout, vec![r.id])),
        }
    }
    for (stdout, ids) in groups {
        writeln!(out, "---------------")?;
        writeln!(out, "[{}]", fold_ids(&ids))?;
        writeln!(out, "---------------")?;
        out.write_all(stdout)?;
        if !stdout.is_empty() && !stdout.ends_with(b"\n") {
            out.write_all(b"\n")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(id: u32, stdout: &str) -> EngineResult {
        EngineResult {
            id,
            host: "h".into(),
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
    fn groups_identical_outputs() {
        let mut out = Vec::new();
        let results = [result(0, "x\n"), result(1, "y\n"), result(2, "x\n")];
        grouped(&mut out, &results).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "---------------\n[0,2]\n---------------\nx\n---------------\n[1]\n---------------\ny\n"
        );
    }
}
