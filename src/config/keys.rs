//! Every key a cluster file takes, with its values and default, for
//! `pcl-cluster(5)`. A test checks this list against what the parser
//! accepts, and the defaults come from `HostSpec::new`, so the manual
//! cannot drift from the code.

use super::host_spec::HostSpec;
use super::values::MAX_SECONDS;

/// Where in the file a key goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Place {
    /// At the top of the file, before any table.
    Top,
    /// In `[[hosts]]` tables, and in `[defaults]` (all but `host`).
    Host,
    /// In the `[slurm]` table: an allocation pcl asks Slurm for.
    Slurm,
}

#[derive(Debug, Clone)]
pub(crate) struct Key {
    pub name: &'static str,
    pub place: Place,
    /// The values it takes.
    pub values: String,
    /// What applies when the file leaves it out.
    pub default: String,
    pub meaning: &'static str,
}

/// The keys, in the order the manual lists them.
pub(crate) fn keys() -> Vec<Key> {
    let spec = HostSpec::new("");
    let launcher = spec.launcher.name();
    let transport = spec.transport.name();
    let key = |name, place, values: &str, default: &str, meaning| Key {
        name,
        place,
        values: values.to_string(),
        default: default.to_string(),
        meaning,
    };
    let seconds = format!("whole seconds, 1 to {MAX_SECONDS}");
    vec![
        key(
            "name",
            Place::Top,
            "letters, digits, _, . and -, not starting with .",
            "none: the session is named by --session, $PCL_SESSION or default",
            "The session name. --session and $PCL_SESSION take precedence; the other \
             verbs find a session by itself when it is the only one running.",
        ),
        key(
            "defaults",
            Place::Top,
            "a table of host keys (all but host)",
            "none",
            "Written [defaults]. Its keys apply to every [[hosts]] table that does not \
             set them; a key set on a host replaces its default whole (ssh_options \
             lists are not joined).",
        ),
        key(
            "slurm",
            Place::Top,
            "a table of Slurm keys, written [slurm]",
            "none: no allocation is asked for",
            "An allocation pcl asks Slurm for at pcl up (salloc), holds for the session \
             and gives back at pcl down; its nodes become the hosts.",
        ),
        key(
            "nodes",
            Place::Slurm,
            "a whole number, at least 1",
            "Slurm's default",
            "Nodes to ask for (salloc --nodes).",
        ),
        key(
            "tasks_per_node",
            Place::Slurm,
            "a whole number, at least 1",
            "engines, else Slurm's default",
            "Tasks per node (--ntasks-per-node); engines per node default to it.",
        ),
        key(
            "engines",
            Place::Slurm,
            "1 to 1024",
            "the tasks Slurm gives each node",
            "Engines per node; also asks for that many tasks when tasks_per_node is not set.",
        ),
        key(
            "time",
            Place::Slurm,
            "a Slurm time limit, e.g. \"1:00:00\"",
            "the partition's default",
            "The allocation's time limit (--time).",
        ),
        key(
            "partition",
            Place::Slurm,
            "a partition name",
            "Slurm's default partition",
            "Where to ask (--partition).",
        ),
        key(
            "account",
            Place::Slurm,
            "an account name",
            "the user's default account",
            "Whose allocation it is (--account).",
        ),
        key(
            "qos",
            Place::Slurm,
            "a quality of service name",
            "Slurm's default",
            "The quality of service (--qos).",
        ),
        key(
            "options",
            Place::Slurm,
            "an array of strings",
            "none",
            "More salloc options, passed verbatim after pcl's own.",
        ),
        key(
            "hosts",
            Place::Top,
            "an array of tables, written [[hosts]]; at least one",
            "none: required",
            "The hosts to start engines on. Engines are numbered from 0 in the order of \
             the tables, and within a table in the order of its host names.",
        ),
        key(
            "host",
            Place::Host,
            "a host name, or a ClusterShell node set such as node[01-16], n[1-3,7],login1 or \
             node[01-64]!node13 (! removes, & intersects, ^ keeps what one side names)",
            "none: required in every [[hosts]] table, not allowed in [defaults]",
            "The hosts of this table, read as ClusterShell 1.9 reads a node set: its names in \
             the order nodeset -e gives them (sorted, repeats merged); @groups and names with \
             spaces are refused. A host may appear once in the file (compared ignoring case).",
        ),
        key(
            "engines",
            Place::Host,
            &format!("1 to {}", u32::MAX),
            &spec.engines.to_string(),
            "Engines (persistent shells) per host. pcl up -n N overrides it for every host.",
        ),
        key(
            "launcher",
            Place::Host,
            "ssh or local",
            launcher,
            "How engine hosts start: over the system OpenSSH client (~/.ssh/config, agents \
             and ProxyJump work), or as local processes, without ssh.",
        ),
        key(
            "transport",
            Place::Host,
            "auto, quic or ssh",
            transport,
            "Where the session's traffic to an ssh host travels: QUIC over UDP straight to \
             the host (quic), or QUIC's datagrams over the ssh channel the engine host was \
             started on (ssh), for hosts behind a bastion (ProxyJump, ProxyCommand) or a \
             firewall that passes only ssh. auto uses UDP when the host answers there within \
             3 seconds, else the ssh channel, and pcl up says so. Hosts of the local and \
             slurm launchers use UDP.",
        ),
        key(
            "user",
            Place::Host,
            "a login name",
            "ssh's own choice",
            "ssh -l.",
        ),
        key(
            "port",
            Place::Host,
            "1 to 65535",
            "ssh's own choice",
            "ssh -p.",
        ),
        key(
            "identity",
            Place::Host,
            "a path, passed to ssh as given",
            "ssh's own choice",
            "ssh -i.",
        ),
        key(
            "ssh_options",
            Place::Host,
            "an array of strings",
            "none",
            "Extra ssh arguments, verbatim, before the host name, e.g. \
             [\"-o\", \"ConnectTimeout=10\"].",
        ),
        key(
            "workdir",
            Place::Host,
            "a directory; a leading ~ is the engine host's home",
            "the home directory",
            "Created if missing; engines start there, and file transfers are relative to it. \
             Hosts whose workdirs are one directory (a home on NFS) are found at up: push \
             --file sends one copy per directory, and scatter or gather --file refuses one \
             file for two engines (use --file 'part.{id}').",
        ),
        key(
            "engine_path",
            Place::Host,
            "the path of pcl on the host",
            "pcl uploads itself to ~/.cache/pcl on the host (same OS and architecture)",
            "The pcl binary to run as the engine host.",
        ),
        key(
            "shell",
            Place::Host,
            "a program",
            &spec.shell,
            "The engines' shell; bash runs with --noprofile --norc.",
        ),
        key(
            "setup",
            Place::Host,
            "shell code, one or more lines",
            "none",
            "Run in every engine's shell before it is ready, so what it sets stays. If it \
             fails, that engine fails to start, with its stderr; with bash, errors name \
             the setup's own line.",
        ),
        key(
            "link_timeout",
            Place::Host,
            &seconds,
            &spec.link_timeout.to_string(),
            "Seconds of silence on the link before calls to the host fail.",
        ),
        key(
            "reconnect_grace",
            Place::Host,
            &seconds,
            &spec.reconnect_grace.to_string(),
            "Seconds a lost host may take to come back with its engines' state before it \
             is given up and its engines stopped.",
        ),
        key(
            "relay",
            Place::Host,
            "true or false",
            &spec.relay.to_string(),
            "Whether push --file may reach this host through other hosts: the session \
             sends the file out once and each host passes it on to the next as it \
             arrives. false: this host gets its copy straight from the session and \
             passes nothing on; in [defaults], relaying is off for the whole session.",
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Cluster;

    /// The keys serde names when it meets an unknown one in `table`.
    fn accepted(file: &str) -> Vec<String> {
        let error = Cluster::parse(file, "t.toml").unwrap_err().to_string();
        let (_, list) = error
            .split_once("expected one of ")
            .unwrap_or_else(|| panic!("{error}"));
        list.split(", ")
            .map(|key| key.trim().trim_matches('`').to_string())
            .collect()
    }

    fn documented(place: Place) -> Vec<String> {
        let mut names: Vec<String> = keys()
            .into_iter()
            .filter(|k| k.place == place)
            .map(|k| k.name.to_string())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn every_key_the_parser_takes_is_documented_and_no_other() {
        let mut top = accepted("zzz = 1\n");
        top.sort();
        assert_eq!(top, documented(Place::Top));
        let mut host = accepted("[[hosts]]\nhost = \"a\"\nzzz = 1\n");
        host.sort();
        assert_eq!(host, documented(Place::Host));
        let mut slurm = accepted("[slurm]\nzzz = 1\n");
        slurm.sort();
        assert_eq!(slurm, documented(Place::Slurm));
    }
}
