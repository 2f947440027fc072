//! The cluster file's Slurm parts and the placing of an allocation.

use super::{
    AllocatedNode, Allocation, AllocationError, Cluster, HostSpec, LauncherKind, SlurmRequest,
};

fn parse(text: &str) -> Cluster {
    Cluster::parse(text, "cluster.toml").unwrap_or_else(|error| panic!("{error}"))
}

fn error(text: &str) -> String {
    match Cluster::parse(text, "cluster.toml") {
        Ok(cluster) => panic!("accepted: {cluster:?}"),
        Err(error) => error.to_string(),
    }
}

fn allocation(job: &str, nodes: &[(&str, u32)]) -> Allocation {
    Allocation {
        job: job.into(),
        nodes: nodes
            .iter()
            .map(|&(name, tasks)| AllocatedNode {
                name: name.into(),
                tasks,
            })
            .collect(),
    }
}

fn hosts(cluster: &Cluster) -> Vec<(&str, u32, LauncherKind)> {
    cluster
        .hosts
        .iter()
        .map(|h| (h.host.as_str(), h.engines, h.launcher))
        .collect()
}

#[test]
fn slurm_table_alone_is_a_cluster_that_asks_for_nodes() {
    let cluster = parse(
        r#"
[defaults]
workdir = "~/w"
[slurm]
nodes = 4
engines = 2
time = "1:30:00"
partition = "debug"
account = "proj"
qos = "short"
options = ["--exclusive"]
"#,
    );
    assert!(cluster.hosts.is_empty());
    assert_eq!(
        cluster.slurm_request(),
        Some(&SlurmRequest {
            nodes: Some(4),
            // engines size the allocation when tasks_per_node is left out
            tasks_per_node: Some(2),
            time: Some("1:30:00".into()),
            partition: Some("debug".into()),
            account: Some("proj".into()),
            qos: Some("short".into()),
            options: vec!["--exclusive".into()],
        })
    );
    let placed = cluster
        .place_allocation(&allocation("12", &[("n1", 2), ("n2", 2)]))
        .unwrap();
    assert_eq!(
        hosts(&placed),
        [
            ("n1", 2, LauncherKind::Slurm),
            ("n2", 2, LauncherKind::Slurm)
        ]
    );
    assert!(
        placed
            .hosts
            .iter()
            .all(|h| h.slurm_job.as_deref() == Some("12"))
    );
    assert!(
        placed
            .hosts
            .iter()
            .all(|h| h.workdir.as_deref() == Some("~/w"))
    );
    assert_eq!(placed.slurm, None);
}

#[test]
fn engines_default_to_slurms_tasks_per_node() {
    let cluster = parse("[slurm]\ntasks_per_node = 3\ntime = 30\n");
    let request = cluster.slurm_request().unwrap();
    assert_eq!(request.tasks_per_node, Some(3));
    assert_eq!(request.time.as_deref(), Some("30"));
    let placed = cluster
        .place_allocation(&allocation("7", &[("a", 3), ("b", 1)]))
        .unwrap();
    assert_eq!(
        hosts(&placed),
        [("a", 3, LauncherKind::Slurm), ("b", 1, LauncherKind::Slurm)]
    );
}

#[test]
fn slurm_hosts_table_stands_for_the_allocation_in_file_order() {
    let cluster = parse(
        r#"
[[hosts]]
host = "localhost"
launcher = "local"
[[hosts]]
launcher = "slurm"
setup = "module load x"
[[hosts]]
host = "gpu1"
"#,
    );
    assert_eq!(cluster.slurm_request(), None);
    let placed = cluster
        .place_allocation(&allocation("5", &[("n1", 2), ("n2", 1)]))
        .unwrap();
    assert_eq!(
        hosts(&placed),
        [
            ("localhost", 1, LauncherKind::Local),
            ("n1", 2, LauncherKind::Slurm),
            ("n2", 1, LauncherKind::Slurm),
            ("gpu1", 1, LauncherKind::Ssh),
        ]
    );
    assert_eq!(placed.hosts[1].setup.as_deref(), Some("module load x"));
    assert_eq!(placed.hosts[0].slurm_job, None);
}

#[test]
fn a_host_on_the_slurm_table_picks_nodes_and_engines_override_tasks() {
    let cluster = parse("[[hosts]]\nlauncher = \"slurm\"\nhost = \"n[2-3]\"\nengines = 4\n");
    let placed = cluster
        .clone()
        .place_allocation(&allocation("5", &[("n1", 1), ("n2", 1), ("n3", 1)]))
        .unwrap();
    assert_eq!(
        hosts(&placed),
        [
            ("n2", 4, LauncherKind::Slurm),
            ("n3", 4, LauncherKind::Slurm)
        ]
    );
    let error = cluster
        .place_allocation(&allocation("5", &[("n1", 1), ("n2", 1)]))
        .unwrap_err()
        .to_string();
    assert_eq!(
        error,
        "host \"n3\" is not a node of Slurm job 5 (its nodes: n1,n2); name nodes of the \
         allocation, or leave host out for all of them"
    );
}

#[test]
fn engines_precedence_table_then_slurm_then_defaults_then_minus_n() {
    let text = "[defaults]\nengines = 5\n[slurm]\nengines = 3\n[[hosts]]\nlauncher = \"slurm\"\n";
    let two = allocation("1", &[("a", 1)]);
    assert_eq!(
        parse(text).place_allocation(&two).unwrap().hosts[0].engines,
        3
    );
    let text = "[defaults]\nengines = 5\n[[hosts]]\nlauncher = \"slurm\"\n";
    assert_eq!(
        parse(text).place_allocation(&two).unwrap().hosts[0].engines,
        5
    );
    let text = "[slurm]\nengines = 3\n[[hosts]]\nlauncher = \"slurm\"\nengines = 2\n";
    assert_eq!(
        parse(text).place_allocation(&two).unwrap().hosts[0].engines,
        2
    );
    let cluster = parse(text).with_engines(7);
    assert_eq!(cluster.place_allocation(&two).unwrap().hosts[0].engines, 7);
}

#[test]
fn slurm_default_takes_every_node() {
    let placed = Cluster::slurm_default()
        .place_allocation(&allocation("9", &[("x1", 2), ("x2", 2)]))
        .unwrap();
    assert_eq!(
        placed.hosts,
        ["x1", "x2"].map(|name| HostSpec {
            launcher: LauncherKind::Slurm,
            engines: 2,
            slurm_job: Some("9".into()),
            ..HostSpec::new(name)
        })
    );
}

#[test]
fn a_node_listed_twice_is_refused() {
    let cluster = parse("[slurm]\n[[hosts]]\nhost = \"n1\"\n");
    let error = cluster
        .place_allocation(&allocation("1", &[("N1", 1)]))
        .unwrap_err()
        .to_string();
    assert!(error.contains("list it once"), "{error}");
}

#[test]
fn slurm_errors_name_their_place() {
    assert_eq!(
        error("[[hosts]]\nlauncher = \"slurm\"\n[[hosts]]\nlauncher = \"slurm\"\n"),
        "cluster.toml:3:1: a second [[hosts]] table with launcher = \"slurm\" (the first is at \
         line 1, column 1); one table stands for all the nodes of the allocation: give it host \
         = \"...\" to pick some"
    );
    assert_eq!(
        error("[slurm]\nnodes = 0\n"),
        "cluster.toml:2:9: nodes must be between 1 and 100000, not 0 (leave it out for 1 node)"
    );
    assert_eq!(
        error("[slurm]\ntime = \"soon\"\n"),
        "cluster.toml:2:8: time \"soon\" is not a time limit: write minutes (30), \"HH:MM:SS\" \
         or \"DAYS-HH:MM:SS\", as Slurm's --time takes them"
    );
    assert_eq!(
        error("[slurm]\npartition = \"a b\"\n"),
        "cluster.toml:2:13: \"a b\" is not a Slurm name: give one word, or leave the key out \
         for Slurm's default"
    );
    assert!(error("[slurm]\nnodse = 2\n").contains("unknown field `nodse`"));
    assert!(error("[slurm]\ntasks_per_node = 2000\n").contains("between 1 and 1024"));
}

#[test]
fn slurm_variables_become_an_allocation_in_slurms_order() {
    let allocation = Allocation::parse("42", "n[08-10],a1,b[2,1]", Some("2(x3),1,3(x2)")).unwrap();
    let nodes: Vec<(&str, u32)> = allocation
        .nodes
        .iter()
        .map(|n| (n.name.as_str(), n.tasks))
        .collect();
    assert_eq!(
        nodes,
        [
            ("n08", 2),
            ("n09", 2),
            ("n10", 2),
            ("a1", 1),
            ("b1", 3),
            ("b2", 3)
        ]
    );
    let one_each = Allocation::parse("42", "h[1-3]", None).unwrap();
    assert!(one_each.nodes.iter().all(|n| n.tasks == 1));

    let message = |r: Result<Allocation, AllocationError>| r.unwrap_err().to_string();
    assert!(message(Allocation::parse("x", "h1", None)).contains("not a Slurm job id"));
    assert!(message(Allocation::parse("1", "h[1-", None)).contains("h[1-"));
    assert!(message(Allocation::parse("1", "", None)).contains("no nodes"));
    assert_eq!(
        message(Allocation::parse("1", "h[1-3]", Some("2(x2)"))),
        "SLURM_TASKS_PER_NODE \"2(x2)\" does not describe 3 nodes (Slurm writes \"2(x3),1\")"
    );
}

#[test]
fn the_examples_commented_slurm_table_parses_once_uncommented() {
    let example = include_str!("../../cluster.example.toml");
    let table = &example[example.find("# [slurm]").expect("a [slurm] example")..];
    let text: String = table
        .lines()
        .map(|line| line.strip_prefix("# ").unwrap_or(line))
        .map(|line| format!("{line}\n"))
        .collect();
    let cluster = parse(&text);
    let request = cluster.slurm_request().expect("a request");
    assert_eq!(request.nodes, Some(4));
    assert_eq!(request.tasks_per_node, Some(8));
    assert_eq!(request.partition.as_deref(), Some("compute"));
    assert_eq!(request.options, ["--constraint=skylake"]);
}
