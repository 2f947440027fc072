//! The shipped manual pages are generated from the clap definitions; this
//! fails when they drift apart. Regenerate with `pcl man --dir man`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

fn pcl(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_pcl"))
        .args(args)
        .output()
        .expect("pcl runs")
}

/// The `*.1` files in `dir`, by name.
fn pages(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .expect("a man directory")
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|e| e == "1"))
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect()
}

#[test]
fn man_pages_are_current() {
    let fresh = tempfile::tempdir().unwrap();
    let out = pcl(&["man", "--dir", &fresh.path().to_string_lossy()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let generated = pages(fresh.path());
    let shipped = pages(&Path::new(env!("CARGO_MANIFEST_DIR")).join("man"));
    assert_eq!(
        generated.keys().collect::<Vec<_>>(),
        shipped.keys().collect::<Vec<_>>(),
        "man/ has other pages than pcl writes: run `cargo run -- man --dir man` (and remove \
         pages of commands that are gone)"
    );
    for (name, roff) in &generated {
        assert!(
            shipped[name] == *roff,
            "man/{name} is stale: run `cargo run -- man --dir man`"
        );
    }
    // `pcl man` alone prints the top page, which names every other one.
    let top = pcl(&["man"]).stdout;
    assert_eq!(top, generated["pcl.1"]);
    let top = String::from_utf8(top).unwrap();
    for name in generated.keys().filter(|name| *name != "pcl.1") {
        let reference = format!("{}(1)", name.trim_end_matches(".1").replace('-', "\\-"));
        assert!(top.contains(&reference), "pcl.1 names {reference}");
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
