use std::str::FromStr;

use super::SessionError;
use crate::config::NodeSet;

/// Which engines a call addresses: `all`, ids like `0,2,5-7`, or host
/// names and ranges like `node[01-04]` or `node[01-64]!node13` (every
/// engine on those hosts), read as the cluster file's `host` is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Targets {
    All,
    Ids(Vec<u32>),
    Hosts(Vec<String>),
}

impl FromStr for Targets {
    type Err = SessionError;

    fn from_str(s: &str) -> Result<Self, SessionError> {
        let bad = |why: &str| SessionError::BadTargets(s.to_string(), why.to_string());
        let s = s.trim();
        if s.is_empty() {
            return Err(bad("the target list is empty"));
        }
        if s == "all" {
            return Ok(Targets::All);
        }
        if s.bytes()
            .all(|b| b.is_ascii_digit() || b == b',' || b == b'-')
        {
            let mut ids = Vec::new();
            for part in s.split(',') {
                let (lo, hi) = part.split_once('-').unwrap_or((part, part));
                let lo: u32 = lo.parse().map_err(|_| bad("expected ids like 0,2,5-7"))?;
                let hi: u32 = hi.parse().map_err(|_| bad("expected ids like 0,2,5-7"))?;
                if lo > hi {
                    return Err(bad("a range must go upwards"));
                }
                ids.extend(lo..=hi);
            }
            ids.sort_unstable();
            ids.dedup();
            return Ok(Targets::Ids(ids));
        }
        let hosts = NodeSet::parse(s).map_err(|e| bad(&e.to_string()))?.names();
        if hosts.is_empty() {
            return Err(bad("no host is left"));
        }
        Ok(Targets::Hosts(hosts))
    }
}

impl Targets {
    /// The engine ids addressed, in id order, given every engine's (id, host).
    pub(crate) fn resolve(&self, engines: &[(u32, String)]) -> Result<Vec<u32>, String> {
        match self {
            Targets::All => Ok(engines.iter().map(|(id, _)| *id).collect()),
            Targets::Ids(ids) => {
                for id in ids {
                    if !engines.iter().any(|(e, _)| e == id) {
                        let all: Vec<u32> = engines.iter().map(|(id, _)| *id).collect();
                        return Err(format!("no engine {id} (engines: {})", fold_ids(&all)));
                    }
                }
                Ok(ids.clone())
            }
            Targets::Hosts(hosts) => {
                if let Some(unknown) = hosts.iter().find(|h| !engines.iter().any(|(_, e)| e == *h))
                {
                    return Err(format!("no engine on host `{unknown}` in this session"));
                }
                Ok(engines
                    .iter()
                    .filter(|(_, h)| hosts.contains(h))
                    .map(|(id, _)| *id)
                    .collect())
            }
        }
    }
}

/// Fold sorted ids into ranges: `[0,1,2,5]` -> `0-2,5`.
pub(crate) fn fold_ids(ids: &[u32]) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < ids.len() {
        let start = ids[i];
        let mut end = start;
        while i + 1 < ids.len() && ids[i + 1] == end + 1 {
            i += 1;
            end = ids[i];
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engines() -> Vec<(u32, String)> {
        (0..6)
            .map(|i| (i, format!("node{:02}", i / 2 + 1)))
            .collect()
    }

    #[test]
    fn ids_and_ranges() {
        let t: Targets = "0,2-3,3".parse().unwrap();
        assert_eq!(t, Targets::Ids(vec![0, 2, 3]));
        assert_eq!(t.resolve(&engines()).unwrap(), vec![0, 2, 3]);
        assert!("9".parse::<Targets>().unwrap().resolve(&engines()).is_err());
        assert!("3-1".parse::<Targets>().is_err());
    }

    #[test]
    fn host_ranges() {
        let t: Targets = "node[01-02]".parse().unwrap();
        assert_eq!(t.resolve(&engines()).unwrap(), vec![0, 1, 2, 3]);
        let err = "node09"
            .parse::<Targets>()
            .unwrap()
            .resolve(&engines())
            .unwrap_err();
        assert!(err.contains("node09"), "{err}");
    }

    #[test]
    fn host_operators() {
        let t: Targets = "node[01-03]!node02".parse().unwrap();
        assert_eq!(t.resolve(&engines()).unwrap(), vec![0, 1, 4, 5]);
        let t: Targets = "node[01-02]&node[02-09]".parse().unwrap();
        assert_eq!(t.resolve(&engines()).unwrap(), vec![2, 3]);
        assert!("node01!node01".parse::<Targets>().is_err());
        assert!("node01!".parse::<Targets>().is_err());
        assert!("@all".parse::<Targets>().is_err());
    }

    #[test]
    fn folding() {
        assert_eq!(fold_ids(&[0, 1, 2, 5, 7, 8]), "0-2,5,7-8");
        assert_eq!(fold_ids(&[]), "");
    }
}
