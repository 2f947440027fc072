//! REMOTE templates: `{id}` and `{host}` in a `--file` REMOTE name a file
//! per engine, so engines that share a workdir need not share the file.
//! `{{` and `}}` are literal braces. The CLI checks a template before any
//! engine is contacted; the daemon expands it per engine, and the result
//! is checked as any REMOTE is.

use std::path::PathBuf;

use super::data::{DataError, check_remote};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Id,
    Host,
}

/// A parsed REMOTE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteTemplate {
    parts: Vec<Part>,
}

impl RemoteTemplate {
    pub fn parse(remote: &str) -> Result<RemoteTemplate, DataError> {
        let bad = |why: &str| DataError::BadTemplate(remote.to_string(), why.to_string());
        let mut parts = Vec::new();
        let mut text = String::new();
        let mut rest = remote;
        while let Some(at) = rest.find(['{', '}']) {
            text.push_str(&rest[..at]);
            let tail = &rest[at..];
            if let Some(after) = tail.strip_prefix("{{") {
                text.push('{');
                rest = after;
            } else if let Some(after) = tail.strip_prefix("}}") {
                text.push('}');
                rest = after;
            } else if tail.starts_with('}') {
                return Err(bad("a lone `}`"));
            } else {
                let Some(end) = tail.find('}') else {
                    return Err(bad("a `{` that is never closed"));
                };
                let part = match &tail[1..end] {
                    "id" => Part::Id,
                    "host" => Part::Host,
                    other => return Err(bad(&format!("unknown `{{{other}}}`"))),
                };
                if !text.is_empty() {
                    parts.push(Part::Text(std::mem::take(&mut text)));
                }
                parts.push(part);
                rest = &tail[end + 1..];
            }
        }
        text.push_str(rest);
        if !text.is_empty() {
            parts.push(Part::Text(text));
        }
        Ok(RemoteTemplate { parts })
    }

    /// The REMOTE of engine `id` on `host`, checked as any REMOTE is (a
    /// host name could hold what a path must not).
    pub fn expand(&self, id: u32, host: &str) -> Result<String, DataError> {
        let mut path = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => path.push_str(text),
                Part::Id => path.push_str(&id.to_string()),
                Part::Host => path.push_str(host),
            }
        }
        check_remote(&path)?;
        Ok(path)
    }
}

/// What the CLI checks before any engine is contacted: the template, and
/// the path it makes (absolute or `..` whatever the engine and host).
pub fn check_remote_template(remote: &str) -> Result<PathBuf, DataError> {
    let template = RemoteTemplate::parse(remote)?;
    check_remote(&template.expand(0, "host")?)
}

/// `name` as a template naming exactly that file (braces doubled), for a
/// REMOTE taken from LOCAL's file name.
pub fn literal(name: &str) -> String {
    name.replace('{', "{{").replace('}', "}}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_hosts_and_braces() {
        let t = RemoteTemplate::parse("out/{host}/part.{id}.csv").unwrap();
        assert_eq!(t.expand(7, "node03").unwrap(), "out/node03/part.7.csv");
        let t = RemoteTemplate::parse("a{{id}}b}}{{").unwrap();
        assert_eq!(t.expand(1, "h").unwrap(), "a{id}b}{");
        let t = RemoteTemplate::parse("{{{id}}}").unwrap();
        assert_eq!(t.expand(3, "h").unwrap(), "{3}");
        let t = RemoteTemplate::parse("plain.txt").unwrap();
        assert_eq!(t.expand(0, "h").unwrap(), "plain.txt");
    }

    #[test]
    fn bad_templates() {
        for bad in ["{nope}", "a{", "a}", "{id", "x{}y", "{ID}", "}{id}"] {
            assert!(
                matches!(RemoteTemplate::parse(bad), Err(DataError::BadTemplate(..))),
                "{bad}"
            );
        }
    }

    #[test]
    fn expansions_are_checked_like_any_remote() {
        assert!(matches!(
            check_remote_template("/abs/{id}"),
            Err(DataError::AbsolutePath(_))
        ));
        assert!(matches!(
            check_remote_template("{id}/../../x"),
            Err(DataError::ParentDir(_))
        ));
        let t = RemoteTemplate::parse("{host}/x").unwrap();
        assert!(matches!(t.expand(0, ".."), Err(DataError::ParentDir(_))));
        assert!(check_remote_template("part.{id}").is_ok());
    }

    #[test]
    fn a_literal_name_stays_that_name() {
        let name = "data{1}}{.bin";
        let t = RemoteTemplate::parse(&literal(name)).unwrap();
        assert_eq!(t.expand(5, "h").unwrap(), name);
    }
}
