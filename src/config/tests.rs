use std::path::{Path, PathBuf};

use super::error::ConfigError;
use super::error::line_col;
use super::{Cluster, HostSpec, LauncherKind};

fn parse(text: &str) -> Cluster {
    Cluster::parse(text, "cluster.toml").unwrap_or_else(|error| panic!("{error}"))
}

/// The message for `text`, which must be rejected.
fn error(text: &str) -> String {
    match Cluster::parse(text, "cluster.toml") {
        Ok(cluster) => panic!("accepted: {cluster:?}"),
        Err(error) => error.to_string(),
    }
}

fn names(cluster: &Cluster) -> Vec<&str> {
    cluster
        .hosts
        .iter()
        .map(|host| host.host.as_str())
        .collect()
}

#[test]
fn full_file() {
    let cluster = parse(
        r#"
name = "lab"
[[hosts]]
host = "gpu1"
launcher = "ssh"
engines = 3
user = "alice"
port = 2222
identity = "~/.ssh/id_ed25519"
ssh_options = ["-o", "ConnectTimeout=5"]
workdir = "~/work"
engine_path = "/opt/pcl"
shell = "zsh"
setup = "module load gcc"
link_timeout = 5
reconnect_grace = 120
[[hosts]]
host = "localhost"
launcher = "local"
"#,
    );
    assert_eq!(cluster.name.as_deref(), Some("lab"));
    assert_eq!(
        cluster.hosts,
        vec![
            HostSpec {
                host: "gpu1".into(),
                launcher: LauncherKind::Ssh,
                engines: 3,
                user: Some("alice".into()),
                port: Some(2222),
                identity: Some(PathBuf::from("~/.ssh/id_ed25519")),
                ssh_options: vec!["-o".into(), "ConnectTimeout=5".into()],
                workdir: Some("~/work".into()),
                engine_path: Some("/opt/pcl".into()),
                shell: "zsh".into(),
                setup: Some("module load gcc".into()),
                link_timeout: 5,
                reconnect_grace: 120,
                slurm_job: None,
            },
            HostSpec {
                launcher: LauncherKind::Local,
                ..HostSpec::new("localhost")
            },
        ]
    );
    assert_eq!(cluster.engine_count(), 4);
}

#[test]
fn minimal_host_takes_every_default() {
    let cluster = parse("[[hosts]]\nhost = \"localhost\"\n");
    assert_eq!(cluster.name, None);
    // Named localhost, but still ssh: only launcher = "local" skips it.
    assert_eq!(cluster.hosts, vec![HostSpec::new("localhost")]);
    assert_eq!(cluster.hosts[0].launcher, LauncherKind::Ssh);
    assert_eq!(cluster.hosts[0].engines, 1);
    assert_eq!(cluster.hosts[0].shell, "bash");
}

#[test]
fn defaults_fill_in_and_host_keys_win() {
    let cluster = parse(
        r#"
[defaults]
engines = 4
user = "alice"
workdir = "~/pcl-work"
setup = "source ~/venv/bin/activate"
ssh_options = ["-4"]
launcher = "local"
[[hosts]]
host = "a"
[[hosts]]
host = "b"
engines = 2
user = "bob"
ssh_options = ["-6"]
launcher = "ssh"
"#,
    );
    let [a, b] = &cluster.hosts[..] else {
        panic!("{cluster:?}")
    };
    assert_eq!((a.engines, a.user.as_deref()), (4, Some("alice")));
    assert_eq!((b.engines, b.user.as_deref()), (2, Some("bob")));
    assert_eq!(
        (a.launcher, b.launcher),
        (LauncherKind::Local, LauncherKind::Ssh)
    );
    // A host's list replaces the default list rather than extending it.
    assert_eq!(a.ssh_options, ["-4"]);
    assert_eq!(b.ssh_options, ["-6"]);
    for host in [a, b] {
        assert_eq!(host.workdir.as_deref(), Some("~/pcl-work"));
        assert_eq!(host.setup.as_deref(), Some("source ~/venv/bin/activate"));
    }
    assert_eq!(cluster.engine_count(), 6);
}

#[test]
fn ranges_expand_sorted_within_a_value_in_file_order_across_tables() {
    let cluster = parse(
        r#"
[[hosts]]
host = "node[08-10]"
engines = 2
[[hosts]]
host = "n[7,1-3],login1"
[[hosts]]
host = "alpha"
"#,
    );
    assert_eq!(
        names(&cluster),
        [
            "node08", "node09", "node10", "login1", "n1", "n2", "n3", "n7", "alpha"
        ]
    );
    // Every name of a range gets the range's keys.
    assert!(cluster.hosts[..3].iter().all(|host| host.engines == 2));
    assert_eq!(cluster.engine_count(), 3 * 2 + 6);
}

#[test]
fn host_values_take_clustershell_operators() {
    let cluster = parse(
        r#"
[[hosts]]
host = "node[01-05]!node03"
[[hosts]]
host = "gpu[1-4]&gpu[3-9],cors,cors1"
"#,
    );
    assert_eq!(
        names(&cluster),
        [
            "node01", "node02", "node04", "node05", "cors", "cors1", "gpu3", "gpu4"
        ]
    );
}

#[test]
fn inline_array_of_host_tables_works_too() {
    let cluster = parse(r#"hosts = [{ host = "a" }, { host = "b", engines = 2 }]"#);
    assert_eq!(names(&cluster), ["a", "b"]);
    assert_eq!(cluster.engine_count(), 3);
}

/// The example as shipped starts on any machine; with its commented-out
/// keys put back, it is the full cluster it describes.
#[test]
fn example_file_parses() {
    let text = include_str!("../../cluster.example.toml");
    let shipped =
        Cluster::parse(text, "cluster.example.toml").unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(shipped.name.as_deref(), Some("lab"));
    assert_eq!(shipped.hosts.len(), 1);
    assert_eq!(shipped.hosts[0].launcher, LauncherKind::Local);
    assert_eq!(shipped.engine_count(), 2);
    assert!(shipped.hosts.iter().all(|host| host.setup.is_none()));

    let is_key = |line: &str| {
        line == "[[hosts]]"
            || line
                .split_once(" = ")
                .is_some_and(|(key, _)| key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
    };
    // The Slurm tables at its end are other ways in, not part of it.
    let ssh_cluster = &text[..text.find("# On a Slurm cluster").expect("the Slurm part")];
    let full: String = ssh_cluster
        .lines()
        .map(|line| match line.strip_prefix("# ") {
            Some(rest) if is_key(rest) => format!("{rest}\n"),
            _ => format!("{line}\n"),
        })
        .collect();
    let cluster =
        Cluster::parse(&full, "cluster.example.toml").unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(cluster.hosts.len(), 17);
    assert_eq!(cluster.hosts[0].host, "node01");
    assert_eq!(cluster.hosts[0].user.as_deref(), Some("alice"));
    assert_eq!(cluster.hosts[15].host, "node16");
    assert_eq!(cluster.hosts[16].launcher, LauncherKind::Local);
    assert_eq!(cluster.engine_count(), 16 * 8 + 2);
    assert!(cluster.hosts.iter().all(|host| host.setup.is_some()));
}

#[test]
fn local_default_and_engine_override() {
    let cluster = Cluster::local_default(8);
    assert_eq!(cluster.name, None);
    assert_eq!(
        cluster.hosts,
        vec![HostSpec {
            launcher: LauncherKind::Local,
            engines: 8,
            ..HostSpec::new("localhost")
        }]
    );
    assert_eq!(cluster.engine_count(), 8);

    let cluster = parse("[[hosts]]\nhost = \"n[1-3]\"\nengines = 4\n").with_engines(2);
    assert!(cluster.hosts.iter().all(|host| host.engines == 2));
    assert_eq!(cluster.engine_count(), 6);
}

#[test]
fn engine_count_saturates() {
    let cluster = Cluster::local_default(u32::MAX);
    let cluster = Cluster {
        hosts: [cluster.hosts.clone(), cluster.hosts].concat(),
        ..cluster
    };
    assert_eq!(cluster.engine_count(), u32::MAX);
}

#[test]
fn load_reads_the_file_and_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        "[[hosts]]\nhost = \"a\"\n\n[[hosts]]\nhsot = \"b\"\n",
    )
    .unwrap();
    let message = Cluster::load(&path).unwrap_err().to_string();
    assert_eq!(
        message,
        format!(
            "{}:5:1: unknown field `hsot`, expected one of `host`, `engines`, `user`, `port`, \
             `identity`, `ssh_options`, `launcher`, `workdir`, `engine_path`, `shell`, `setup`, \
             `link_timeout`, `reconnect_grace`",
            path.display()
        )
    );
    std::fs::write(&path, "[[hosts]]\nhost = \"a\"\n").unwrap();
    assert_eq!(names(&Cluster::load(&path).unwrap()), ["a"]);
}

#[test]
fn load_error_names_the_path() {
    let error = Cluster::load(Path::new("/nonexistent/lab.toml")).unwrap_err();
    assert!(matches!(error, ConfigError::Read { .. }), "{error:?}");
    assert!(
        error
            .to_string()
            .starts_with("cannot read cluster file /nonexistent/lab.toml: "),
        "{error}"
    );
}

#[test]
fn content_errors_carry_their_position() {
    let error = Cluster::parse("\n\n[[hosts]]\nhost = 'a'\nengines = 0\n", "x").unwrap_err();
    let ConfigError::Invalid {
        origin,
        line,
        column,
        ..
    } = error
    else {
        panic!("{error:?}")
    };
    assert_eq!((origin.as_str(), line, column), ("x", 5, 11));
}

#[test]
fn line_col_counts_characters_from_one() {
    let text = "ab\néé = x\n\nz";
    assert_eq!(line_col(text, 0), (1, 1));
    assert_eq!(line_col(text, 2), (1, 3));
    assert_eq!(line_col(text, 3), (2, 1));
    // "éé" is four bytes, two columns.
    assert_eq!(line_col(text, 7), (2, 3));
    assert_eq!(line_col(text, text.len()), (4, 2));
    // Out of range clamps to the end instead of panicking.
    assert_eq!(line_col(text, text.len() + 5), (4, 2));
}

#[test]
fn unknown_keys() {
    const EXPECTED: &str = "expected one of `host`, `engines`, `user`, `port`, `identity`, \
                            `ssh_options`, `launcher`, `workdir`, `engine_path`, `shell`, `setup`, `link_timeout`, `reconnect_grace`";
    assert_eq!(
        error("name = \"x\"\n\n[[hosts]]\nhost = \"a\"\n\n[[hosts]]\nhsot = \"b\"\n"),
        format!("cluster.toml:7:1: unknown field `hsot`, {EXPECTED}")
    );
    assert_eq!(
        error("[defaults]\n  engnies = 2\n"),
        format!("cluster.toml:2:3: unknown field `engnies`, {EXPECTED}")
    );
    assert_eq!(
        error("nmae = \"lab\"\n"),
        "cluster.toml:1:1: unknown field `nmae`, expected one of `name`, `defaults`, `hosts`, \
         `slurm`"
    );
    assert_eq!(
        error("hosts = [{ host = \"a\", cores = 2 }]\n"),
        format!("cluster.toml:1:24: unknown field `cores`, {EXPECTED}")
    );
}

#[test]
fn wrong_types() {
    assert_eq!(
        error("[[hosts]]\nhost = \"a\"\nengines = \"4\"\n"),
        "cluster.toml:3:11: invalid type: string \"4\", expected a whole number"
    );
    assert_eq!(
        error("[[hosts]]\nhost = \"a\"\nport = 22.5\n"),
        "cluster.toml:3:8: invalid type: floating point `22.5`, expected a whole number"
    );
    assert_eq!(
        error("[[hosts]]\nhost = \"a\"\nssh_options = \"-4\"\n"),
        "cluster.toml:3:15: invalid type: string \"-4\", expected a sequence"
    );
    assert_eq!(
        error("[[hosts]]\nhost = \"a\"\nssh_options = [\"-o\", 5]\n"),
        "cluster.toml:3:22: invalid type: integer `5`, expected a string"
    );
    assert_eq!(
        error("[[hosts]]\nhost = 7\n"),
        "cluster.toml:2:8: invalid type: integer `7`, expected a string"
    );
    assert_eq!(
        error("[[hosts]]\nhost = \"a\"\nlauncher = \"pbs\"\n"),
        "cluster.toml:3:12: unknown variant `pbs`, expected one of `ssh`, `local`, `slurm`"
    );
    assert_eq!(
        error("defaults = 4\n"),
        "cluster.toml:1:12: invalid type: integer `4`, expected a table"
    );
    assert_eq!(
        error("[hosts]\nhost = \"a\"\n"),
        "cluster.toml:1:1: invalid type: map, expected an array of tables: write [[hosts]], \
         with double brackets"
    );
}

#[test]
fn toml_syntax_errors_stay_on_one_line() {
    assert_eq!(
        error("[[hosts]]\nhost = login1\n"),
        "cluster.toml:2:8: string values must be quoted, expected literal string"
    );
    assert_eq!(
        error("[[hosts]\nhost = \"a\"\n"),
        "cluster.toml:1:9: unclosed array table, expected `]`"
    );
    assert_eq!(
        error("[[hosts]]\nhost = \"a\"\nhost = \"b\"\n"),
        "cluster.toml:3:1: duplicate key"
    );
}

#[test]
fn bad_ranges() {
    assert_eq!(
        error("[[hosts]]\nhost = \"node[01-\"\n"),
        "cluster.toml:2:8: host \"node[01-\" is not a valid host list (missing bracket at \
         \"node[01-\"); write names and ranges like \"node[01-16]\", \"n[1-3,7],login1\" or \
         \"node[01-64]!node13\""
    );
    assert_eq!(
        error("[[hosts]]\nengines = 2\nhost = \"n[5-1]\"\n"),
        "cluster.toml:3:8: host \"n[5-1]\" is not a valid host list (invalid values in range \
         at \"5-1\"); write names and ranges like \"node[01-16]\", \"n[1-3,7],login1\" or \
         \"node[01-64]!node13\""
    );
    assert_eq!(
        error("[[hosts]]\nhost = \"alice@node1\"\n"),
        "cluster.toml:2:8: host \"alice@node1\": '@' node groups are not supported; list the \
         hosts (and give a user name with user = \"...\")"
    );
    assert_eq!(
        error("[[hosts]]\nhost = \" \"\n"),
        "cluster.toml:2:8: host is empty; give a host name or a range like \"node[01-16]\""
    );
    assert_eq!(
        error("[[hosts]]\nhost = \"n[1-2]!n[1-2]\"\n"),
        "cluster.toml:2:8: host \"n[1-2]!n[1-2]\" leaves no host; give a host name or a range \
         like \"node[01-16]\""
    );
    assert_eq!(
        error("[[hosts]]\nhost = \"tigrou 0, tigrou1\"\n"),
        "cluster.toml:2:8: host name \"tigrou 0\" contains a space or control character, which \
         no host name can; separate hosts with ','"
    );
    assert_eq!(
        error("[[hosts]]\nhost = \"a,-oProxyCommand\"\n"),
        "cluster.toml:2:8: host name \"-oProxyCommand\" starts with '-', which ssh would take \
         as an option; fix the host name"
    );
}

#[test]
fn engines_and_port_out_of_range() {
    assert_eq!(
        error("[[hosts]]\nhost = \"a\"\nengines = 0\n"),
        "cluster.toml:3:11: engines must be between 1 and 1024 per host, not 0 (leave it out \
         for 1 engine)"
    );
    assert_eq!(
        error("[defaults]\nengines = -2\n[[hosts]]\nhost = \"a\"\n"),
        "cluster.toml:2:11: engines must be between 1 and 1024 per host, not -2 (leave it out \
         for 1 engine)"
    );
    assert_eq!(
        error("[[hosts]]\nhost = \"a\"\nengines = 100000\n"),
        "cluster.toml:3:11: engines must be between 1 and 1024 per host, not 100000 (leave it \
         out for 1 engine)"
    );
    assert_eq!(
        error("[[hosts]]\nhost = \"a\"\nport = 0\n"),
        "cluster.toml:3:8: port must be between 1 and 65535, not 0 (leave it out for ssh's \
         default)"
    );
    assert_eq!(
        error("[[hosts]]\nhost = \"a\"\nport = 65536\n"),
        "cluster.toml:3:8: port must be between 1 and 65535, not 65536 (leave it out for ssh's \
         default)"
    );
}

#[test]
fn bad_session_names() {
    for name in ["my lab", ".hidden", "", "lab/1", "läb"] {
        assert_eq!(
            error(&format!("name = {name:?}\n[[hosts]]\nhost = \"a\"\n")),
            format!(
                "cluster.toml:1:8: name {name:?} cannot be a session name: use letters, \
                 digits, '_', '.' and '-' only, not starting with '.'"
            )
        );
    }
    assert_eq!(
        parse("name = \"lab-2.v_1\"\n[[hosts]]\nhost = \"a\"\n")
            .name
            .as_deref(),
        Some("lab-2.v_1")
    );
}

#[test]
fn duplicate_hosts() {
    const HINT: &str = "list each host once and set engines = N there for more engines";
    assert_eq!(
        error("[[hosts]]\nhost = \"a\"\n[[hosts]]\nhost = \"a\"\n"),
        format!("cluster.toml:4:8: host \"a\" is listed twice (first at line 2, column 8); {HINT}")
    );
    // Found after expansion, and regardless of case.
    assert_eq!(
        error("[[hosts]]\nhost = \"node[01-16]\"\n[[hosts]]\nhost = \"login,NODE07\"\n"),
        format!(
            "cluster.toml:4:8: host \"NODE07\" is listed twice (first at line 2, column 8); \
             {HINT}"
        )
    );
    // Within one value a repeat is merged, as ClusterShell does.
    assert_eq!(
        names(&parse("[[hosts]]\nhost = \"n[1-3],n2\"\n")),
        ["n1", "n2", "n3"]
    );
}

#[test]
fn no_hosts() {
    const MESSAGE: &str = "no hosts: add at least one [[hosts]] table with host = \"name\"";
    assert_eq!(error(""), format!("cluster.toml:1:1: {MESSAGE}"));
    assert_eq!(
        error("name = \"lab\"\n[defaults]\nengines = 2\n"),
        format!("cluster.toml:1:1: {MESSAGE}")
    );
    assert_eq!(
        error("name = \"lab\"\nhosts = []\n"),
        format!("cluster.toml:2:9: {MESSAGE}")
    );
}

#[test]
fn host_missing_or_misplaced() {
    assert_eq!(
        error("[[hosts]]\nhost = \"a\"\n\n[[hosts]]\nengines = 2\n"),
        "cluster.toml:4:1: this [[hosts]] table has no host; add host = \"name\" or a range \
         like host = \"node[01-16]\""
    );
    assert_eq!(
        error("[defaults]\nhost = \"a\"\n[[hosts]]\nhost = \"b\"\n"),
        "cluster.toml:2:8: host belongs in a [[hosts]] table, not in [defaults]; move it there"
    );
}
