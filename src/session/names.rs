//! Which session a call means. The one rule, for every verb: the name
//! given (`--session`, else `$PCL_SESSION`), else the cluster file's `name`
//! (only `up` reads a cluster file), else `default`; a verb that needs a
//! running session and finds no `default` running takes the one session
//! of this user that is running, and refuses to guess among several.

use super::paths::root;
use super::{SessionError, SessionPaths};

/// The name used when nothing else names a session.
pub(super) const DEFAULT: &str = "default";

/// Where a session's name came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NameSource {
    /// `--session` or `$PCL_SESSION`.
    Given,
    /// The cluster file's `name`.
    ClusterFile,
    Default,
    /// The only session of this user that is running.
    OnlyRunning,
}

/// The session `pcl up` starts.
pub(crate) fn to_start(
    given: Option<&str>,
    cluster_name: Option<&str>,
) -> Result<(SessionPaths, NameSource), SessionError> {
    let (name, source) =
        named(given, cluster_name).unwrap_or((DEFAULT.into(), NameSource::Default));
    Ok((SessionPaths::new(&name)?, source))
}

/// The running session every other verb talks to. When no daemon runs
/// under the chosen name, connecting says so (`no session 'NAME'`).
pub(crate) fn to_reach(given: Option<&str>) -> Result<SessionPaths, SessionError> {
    let (name, _) = match named(given, None) {
        Some(named) => named,
        None => unnamed(&running())?,
    };
    SessionPaths::new(&name)
}

fn named(given: Option<&str>, cluster_name: Option<&str>) -> Option<(String, NameSource)> {
    let given = given.map(|name| (name.to_string(), NameSource::Given));
    given.or_else(|| cluster_name.map(|name| (name.to_string(), NameSource::ClusterFile)))
}

/// No name given: `default` if it runs (or nothing does: the error then
/// names `default`, the session `pcl up` would start), else the only one
/// running; several are listed, not guessed among.
fn unnamed(running: &[String]) -> Result<(String, NameSource), SessionError> {
    match running {
        _ if running.iter().any(|n| n == DEFAULT) => Ok((DEFAULT.into(), NameSource::Default)),
        [] => Ok((DEFAULT.into(), NameSource::Default)),
        [only] => Ok((only.clone(), NameSource::OnlyRunning)),
        several => Err(SessionError::SeveralRunning(several.join(", "))),
    }
}

/// The sessions of this user whose daemon answers, sorted by name.
fn running() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root())
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter(|name| SessionPaths::new(name).is_ok_and(|paths| paths.is_running()))
        .collect();
    names.sort();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reach(running: &[&str]) -> Result<(String, NameSource), SessionError> {
        unnamed(&running.iter().map(|n| n.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn a_given_name_wins_then_the_file_then_default() {
        assert_eq!(
            named(Some("a"), Some("lab")),
            Some(("a".into(), NameSource::Given))
        );
        assert_eq!(
            named(None, Some("lab")),
            Some(("lab".into(), NameSource::ClusterFile))
        );
        assert_eq!(named(None, None), None);
        assert_eq!(
            reach(&["b", "default"]).unwrap(),
            ("default".into(), NameSource::Default)
        );
    }

    #[test]
    fn without_default_the_only_running_session_is_meant() {
        assert_eq!(
            reach(&["lab"]).unwrap(),
            ("lab".into(), NameSource::OnlyRunning)
        );
        // Nothing running: the error names `default`, as `pcl up` would start it.
        assert_eq!(reach(&[]).unwrap().0, "default");
    }

    #[test]
    fn several_running_sessions_are_listed_not_guessed() {
        let text = reach(&["a", "lab"]).unwrap_err().to_string();
        assert!(text.contains("(a, lab)"), "{text}");
        assert!(
            text.contains("--session NAME") && text.contains("PCL_SESSION=NAME"),
            "{text}"
        );
    }
}
