//! Cluster files that are refused: each error names the file, line and
//! column, and says what is allowed.

use std::path::Path;

use super::Cluster;
use super::error::{ConfigError, line_col};
use super::tests::{error, names, parse};

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
fn the_ssh_transport_needs_the_ssh_launcher() {
    for launcher in ["local", "slurm"] {
        assert_eq!(
            error(&format!(
                "[defaults]\ntransport = \"ssh\"\n[[hosts]]\nhost = \"a\"\nlauncher = \"{launcher}\"\n"
            )),
            format!(
                "cluster.toml:3:1: transport = \"ssh\" needs launcher = \"ssh\": a {launcher} host \
                 has no ssh channel to carry the session; leave transport out (or write \"quic\")"
            )
        );
    }
}

#[test]
fn unknown_keys() {
    const EXPECTED: &str = "expected one of `host`, `engines`, `user`, `port`, `identity`, \
                            `ssh_options`, `launcher`, `transport`, `workdir`, `engine_path`, `shell`, `setup`, `link_timeout`, `reconnect_grace`, `relay`";
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
        error("[[hosts]]\nhost = \"a\"\ntransport = \"tcp\"\n"),
        "cluster.toml:3:13: unknown variant `tcp`, expected one of `auto`, `quic`, `ssh`"
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
