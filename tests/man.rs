//! The shipped manual pages are generated from the clap definitions (and
//! the cluster file's key table); this fails when they drift apart.
//! Regenerate with `cargo run -- man man/`.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

fn pcl(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_pcl"))
        .args(args)
        .output()
        .expect("pcl runs")
}

fn shipped() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/man"))
}

fn names(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .expect("a man directory")
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect()
}

#[test]
fn man_pages_are_current() {
    let dir = tempfile::tempdir().unwrap();
    let out = pcl(&["man", &dir.path().to_string_lossy()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        names(dir.path()),
        names(shipped()),
        "man/ holds other pages than pcl makes: run `cargo run -- man man/`"
    );
    for name in names(dir.path()) {
        let generated = std::fs::read(dir.path().join(&name)).unwrap();
        let shipped = std::fs::read(shipped().join(&name)).unwrap();
        assert!(
            generated == shipped,
            "man/{name} is stale: run `cargo run -- man man/`"
        );
    }
}

/// `pcl-up(1)` in a page names the file `pcl-up.1`.
fn references(page: &str) -> BTreeSet<String> {
    let text = page.replace("\\-", "-");
    let mut found = BTreeSet::new();
    for (at, _) in text.match_indices("pcl-") {
        let rest = &text[at..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        if let Some(section) = rest[name.len()..]
            .strip_prefix('(')
            .and_then(|r| r.split_once(')'))
            .map(|(s, _)| s)
        {
            found.insert(format!("{name}.{section}"));
        }
    }
    found
}

#[test]
fn every_page_the_top_page_names_is_shipped() {
    let top = std::fs::read_to_string(shipped().join("pcl.1")).expect("man/pcl.1");
    let named = references(&top);
    for verb in ["pcl-up.1", "pcl-px.1", "pcl-map.1", "pcl-cluster.5"] {
        assert!(
            named.contains(verb),
            "pcl(1) does not name {verb}: {named:?}"
        );
    }
    let shipped = names(shipped());
    let missing: Vec<_> = named.difference(&shipped).collect();
    assert!(
        missing.is_empty(),
        "pcl(1) names pages not shipped: {missing:?}"
    );
    assert!(!named.contains("pcl-help.1"), "help is not a page");
}

#[test]
fn the_pages_carry_the_exit_statuses_and_every_cluster_key() {
    for name in ["pcl.1", "pcl-px.1", "pcl-map.1", "pcl-gather.1"] {
        let page = std::fs::read_to_string(shipped().join(name)).unwrap();
        assert!(page.contains(".SH \"EXIT STATUS\""), "{name}");
        assert!(page.contains("141"), "{name}");
    }
    let cluster = std::fs::read_to_string(shipped().join("pcl-cluster.5")).unwrap();
    for key in [
        "name",
        "defaults",
        "hosts",
        "host",
        "engines",
        "launcher",
        "user",
        "port",
        "identity",
        "ssh_options",
        "workdir",
        "engine_path",
        "shell",
        "setup",
        "link_timeout",
        "reconnect_grace",
    ] {
        assert!(
            cluster.contains(&format!("\\fB{key}\\fR")),
            "pcl-cluster(5) lacks {key}"
        );
    }
    assert!(cluster.contains("86400") && cluster.contains("65535"));
}

#[test]
fn completions_cover_the_verbs() {
    for shell in ["bash", "zsh", "fish"] {
        let out = pcl(&["completions", shell]);
        assert!(
            out.status.success(),
            "{shell}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let script = String::from_utf8(out.stdout).unwrap();
        for verb in ["up", "down", "px", "status"] {
            assert!(script.contains(verb), "{shell} completion lacks {verb}");
        }
    }
}

#[test]
fn up_offers_slurm_in_its_page_and_every_completion() {
    let page = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/man/pcl-up.1"))
        .expect("man/pcl-up.1");
    assert!(page.contains("\\-\\-slurm"), "pcl-up.1 documents --slurm");
    for shell in ["bash", "zsh", "fish"] {
        let out = pcl(&["completions", shell]);
        let script = String::from_utf8(out.stdout).unwrap();
        assert!(
            script.contains("slurm"),
            "{shell} completion offers --slurm"
        );
    }
}
