//! Values in a cluster file that carry their own rules. Each checks itself
//! while it is deserialized, so the toml crate attaches the value's position
//! to the error, and the message says what is allowed instead of naming a
//! Rust type.

use std::fmt;

use super::nodeset::{NodeSet, NodeSetError};
use serde::de::{self, Deserialize, Deserializer, Visitor};

/// `engines`: engines on one host, 1 to `MAX_ENGINES_PER_HOST`.
#[derive(Debug, Clone, Copy)]
pub(super) struct EngineCount(pub(super) u32);

/// The most engines one host may run. Each is a shell with three pipes to
/// its engine host; past a thousand or so, a host runs out of processes
/// or descriptors long before the work gets faster.
pub(crate) const MAX_ENGINES_PER_HOST: u32 = 1024;

/// `port`: an ssh port, 1 to 65535.
#[derive(Debug, Clone, Copy)]
pub(super) struct Port(pub(super) u16);

/// `[slurm] nodes`: nodes to ask Slurm for, 1 to `MAX_SLURM_NODES`.
#[derive(Debug, Clone, Copy)]
pub(super) struct NodeCount(pub(super) u32);

/// More nodes than any Slurm cluster has: a typo, not a request.
const MAX_SLURM_NODES: u32 = 100_000;

/// `[slurm] time`: a time limit as Slurm writes one (`30`, `1:30:00`,
/// `2-00:00:00`, `UNLIMITED`); a whole number is minutes. Slurm itself
/// judges the value; this only keeps out what could not be one.
#[derive(Debug, Clone)]
pub(super) struct SlurmTime(pub(super) String);

/// `[slurm] partition`, `account`, `qos`: one non-empty word.
#[derive(Debug, Clone)]
pub(super) struct SlurmWord(pub(super) String);

/// `link_timeout`, `reconnect_grace`: whole seconds, 1 to one day.
#[derive(Debug, Clone, Copy)]
pub(super) struct Seconds(pub(super) u32);

/// The longest `Seconds`: one day.
pub(super) const MAX_SECONDS: u32 = 86_400;

/// `name`: the session name, which becomes part of file names: letters,
/// digits, `_`, `.` and `-`, not starting with `.`.
#[derive(Debug)]
pub(super) struct SessionName(pub(super) String);

/// `host`: one host name or a ClusterShell node set such as `node[01-16]`,
/// `n[1-3,7],login1` or `node[01-64]!node13`, expanded.
///
/// A `host` value is a set, and its names come out as ClusterShell's
/// `nodeset -e` gives them (sorted, repeats merged), so `n[1-3,7],login1`
/// gives login1, n1, n2, n3, n7. Order across `[[hosts]]` tables is the
/// file's order.
#[derive(Debug)]
pub(super) struct HostNames(pub(super) Vec<String>);

/// Accepts TOML integers only, reporting anything else as "expected a whole
/// number" rather than serde's "expected u32".
struct WholeNumber;

impl Visitor<'_> for WholeNumber {
    type Value = i64;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a whole number")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<i64, E> {
        Ok(v)
    }
}

impl<'de> Deserialize<'de> for EngineCount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = d.deserialize_i64(WholeNumber)?;
        match u32::try_from(n) {
            Ok(engines) if (1..=MAX_ENGINES_PER_HOST).contains(&engines) => {
                Ok(EngineCount(engines))
            }
            _ => Err(de::Error::custom(format!(
                "engines must be between 1 and {MAX_ENGINES_PER_HOST} per host, not {n} \
                 (leave it out for 1 engine)"
            ))),
        }
    }
}

impl<'de> Deserialize<'de> for Port {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = d.deserialize_i64(WholeNumber)?;
        match u16::try_from(n) {
            Ok(port) if port >= 1 => Ok(Port(port)),
            _ => Err(de::Error::custom(format!(
                "port must be between 1 and 65535, not {n} (leave it out for ssh's default)"
            ))),
        }
    }
}

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = d.deserialize_i64(WholeNumber)?;
        match u32::try_from(n) {
            Ok(s) if (1..=MAX_SECONDS).contains(&s) => Ok(Seconds(s)),
            _ => Err(de::Error::custom(format!(
                "expected whole seconds between 1 and {MAX_SECONDS}, not {n}"
            ))),
        }
    }
}

impl<'de> Deserialize<'de> for NodeCount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = d.deserialize_i64(WholeNumber)?;
        match u32::try_from(n) {
            Ok(nodes) if (1..=MAX_SLURM_NODES).contains(&nodes) => Ok(NodeCount(nodes)),
            _ => Err(de::Error::custom(format!(
                "nodes must be between 1 and {MAX_SLURM_NODES}, not {n} (leave it out for 1 node)"
            ))),
        }
    }
}

/// A whole number of minutes or Slurm's own time syntax.
struct MinutesOrText;

impl Visitor<'_> for MinutesOrText {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("minutes, or a time limit as Slurm writes one (\"1:30:00\", \"2-00:00:00\")")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
        if v < 1 {
            return Err(E::custom(format!(
                "time must be at least 1 minute, not {v}"
            )));
        }
        Ok(v.to_string())
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        let slurm_like = !v.is_empty()
            && v.starts_with(|c: char| c.is_ascii_digit())
            && v.chars()
                .all(|c| c.is_ascii_digit() || c == ':' || c == '-');
        let unlimited = ["unlimited", "infinite"].contains(&v.to_ascii_lowercase().as_str());
        if slurm_like || unlimited {
            Ok(v.to_owned())
        } else {
            Err(E::custom(format!(
                "time {v:?} is not a time limit: write minutes (30), \"HH:MM:SS\" or \
                 \"DAYS-HH:MM:SS\", as Slurm's --time takes them"
            )))
        }
    }
}

impl<'de> Deserialize<'de> for SlurmTime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(MinutesOrText).map(SlurmTime)
    }
}

impl<'de> Deserialize<'de> for SlurmWord {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let word = String::deserialize(d)?;
        if word.is_empty() || word.contains(char::is_whitespace) {
            return Err(de::Error::custom(format!(
                "{word:?} is not a Slurm name: give one word, or leave the key out for \
                 Slurm's default"
            )));
        }
        Ok(SlurmWord(word))
    }
}

impl<'de> Deserialize<'de> for SessionName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
        if name.is_empty() || name.starts_with('.') || !name.chars().all(allowed) {
            return Err(de::Error::custom(format!(
                "name {name:?} cannot be a session name: use letters, digits, '_', '.' and '-' \
                 only, not starting with '.'"
            )));
        }
        Ok(SessionName(name))
    }
}

impl<'de> Deserialize<'de> for HostNames {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        expand(&text).map(HostNames).map_err(de::Error::custom)
    }
}

pub(super) fn expand(text: &str) -> Result<Vec<String>, String> {
    // `@` starts a ClusterShell group, for which pcl has no source; inside
    // a name it would make ssh read a user name.
    let groups = || {
        format!(
            "host {text:?}: '@' node groups are not supported; list the hosts \
             (and give a user name with user = \"...\")"
        )
    };
    let mut set = NodeSet::parse(text).map_err(|error| match error {
        NodeSetError::Group => groups(),
        error => format!(
            "host {text:?} is not a valid host list ({error}); write names and ranges \
             like \"node[01-16]\", \"n[1-3,7],login1\" or \"node[01-64]!node13\""
        ),
    })?;
    let names = set.names();
    if names.is_empty() {
        return Err(if text.trim().is_empty() {
            "host is empty; give a host name or a range like \"node[01-16]\"".into()
        } else {
            format!(
                "host {text:?} leaves no host; give a host name or a range like \"node[01-16]\""
            )
        });
    }
    if names.iter().any(|name| name.contains('@')) {
        return Err(groups());
    }
    // ssh would read such a name as an option.
    if let Some(name) = names.iter().find(|name| name.starts_with('-')) {
        return Err(format!(
            "host name {name:?} starts with '-', which ssh would take as an option; \
             fix the host name"
        ));
    }
    // ClusterShell keeps spaces inside names (`tigrou 0`); no host is
    // called that, so it is a typo here.
    if let Some(name) = names
        .iter()
        .find(|name| name.chars().any(|c| c.is_whitespace() || c.is_control()))
    {
        return Err(format!(
            "host name {name:?} contains a space or control character, which no host \
             name can; separate hosts with ','"
        ));
    }
    Ok(names)
}
