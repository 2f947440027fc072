//! The shipped manual page is generated from the clap definitions; this
//! fails when they drift apart. Regenerate with `pcl man > man/pcl.1`.

use std::process::Command;

fn pcl(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_pcl"))
        .args(args)
        .output()
        .expect("pcl runs")
}

#[test]
fn man_page_is_current() {
    let generated = pcl(&["man"]).stdout;
    let shipped =
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/man/pcl.1")).expect("man/pcl.1 exists");
    assert!(
        generated == shipped,
        "man/pcl.1 is stale: run `cargo run -- man > man/pcl.1`"
    );
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
