use std::path::PathBuf;

use super::{Cluster, HostSpec, LauncherKind, Transport};

pub(super) fn parse(text: &str) -> Cluster {
    Cluster::parse(text, "cluster.toml").unwrap_or_else(|error| panic!("{error}"))
}

/// The message for `text`, which must be rejected.
pub(super) fn error(text: &str) -> String {
    match Cluster::parse(text, "cluster.toml") {
        Ok(cluster) => panic!("accepted: {cluster:?}"),
        Err(error) => error.to_string(),
    }
}

pub(super) fn names(cluster: &Cluster) -> Vec<&str> {
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
transport = "ssh"
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
relay = false
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
                transport: Transport::Ssh,
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
                relay: false,
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
    assert_eq!(cluster.hosts[0].transport, Transport::Auto);
}

#[test]
fn transport_takes_its_default_from_defaults() {
    let cluster = parse(
        "[defaults]\ntransport = \"quic\"\n[[hosts]]\nhost = \"a\"\n\
         [[hosts]]\nhost = \"b\"\ntransport = \"ssh\"\n",
    );
    let transports: Vec<Transport> = cluster.hosts.iter().map(|h| h.transport).collect();
    assert_eq!(transports, [Transport::Quic, Transport::Ssh]);
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
             `identity`, `ssh_options`, `launcher`, `transport`, `workdir`, `engine_path`, `shell`, \
             `setup`, `link_timeout`, `reconnect_grace`, `relay`",
            path.display()
        )
    );
    std::fs::write(&path, "[[hosts]]\nhost = \"a\"\n").unwrap();
    assert_eq!(names(&Cluster::load(&path).unwrap()), ["a"]);
}
