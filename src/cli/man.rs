//! The manual pages: `pcl(1)`, one `pcl-VERB(1)` per verb and
//! `pcl-cluster(5)`. The verbs' pages come from the clap definitions that
//! `--help` prints, the cluster page from the config's key table, and
//! every page carries the exit statuses, so none can drift from the code.

use std::io;
use std::path::Path;

use clap::CommandFactory;
use clap_mangen::Man;
use clap_mangen::roff::{Roff, bold, italic, roman};

use super::args::Cli;
use crate::config::{Place, keys};
use crate::protocol::status;

/// Write every page into `dir`; returns their file names.
pub(super) fn write_all(dir: &Path) -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    for (name, page) in pages()? {
        std::fs::write(dir.join(&name), page)?;
        names.push(name);
    }
    Ok(names)
}

/// Every page, as (file name, roff).
fn pages() -> io::Result<Vec<(String, Vec<u8>)>> {
    // The pages are the verbs; `pcl help VERB` is --help, not a page.
    let mut top = Cli::command().disable_help_subcommand(true);
    top.build();
    let mut pages = vec![("pcl.1".to_string(), page(&top, &[("pcl-cluster", "5")])?)];
    for verb in top.get_subcommands().filter(|c| !c.is_hide_set()) {
        let see_also: &[(&str, &str)] = match verb.get_name() {
            "up" => &[("pcl", "1"), ("pcl-cluster", "5")],
            _ => &[("pcl", "1")],
        };
        let name = format!("pcl-{}.1", verb.get_name());
        pages.push((name, page(verb, see_also)?));
    }
    pages.push((
        "pcl-cluster.5".to_string(),
        cluster_page().render().into_bytes(),
    ));
    Ok(pages)
}

/// A command's page as clap_mangen renders it, with EXIT STATUS and SEE
/// ALSO before the version (which only the top page has).
fn page(command: &clap::Command, see_also: &[(&str, &str)]) -> io::Result<Vec<u8>> {
    let man = Man::new(command.clone()).source(source());
    // Each section comes with roff's preamble; the page needs it once.
    let preamble = Roff::new().render();
    let mut out = preamble.clone().into_bytes();
    let mut add = |section: &dyn Fn(&mut Vec<u8>) -> io::Result<()>| -> io::Result<()> {
        let mut buf = Vec::new();
        section(&mut buf)?;
        out.extend_from_slice(buf.strip_prefix(preamble.as_bytes()).unwrap_or(&buf));
        Ok(())
    };
    add(&|w| man.render_title(w))?;
    add(&|w| man.render_name_section(w))?;
    add(&|w| man.render_synopsis_section(w))?;
    add(&|w| man.render_description_section(w))?;
    if command.get_arguments().any(|a| !a.is_hide_set()) {
        add(&|w| man.render_options_section(w))?;
    }
    if command.get_subcommands().any(|c| !c.is_hide_set()) {
        add(&|w| man.render_subcommands_section(w))?;
    }
    let mut roff = Roff::new();
    exit_status(&mut roff);
    references(&mut roff, see_also);
    add(&|w| roff.to_writer(w))?;
    if command.get_version().is_some() {
        add(&|w| man.render_version_section(w))?;
    }
    Ok(out)
}

/// The footer's "source": pcl and its version.
fn source() -> String {
    format!("pcl {}", env!("CARGO_PKG_VERSION"))
}

fn exit_status(roff: &mut Roff) {
    roff.control("SH", ["EXIT STATUS"]);
    for (status, meaning) in status::table() {
        roff.control("TP", []);
        roff.text([bold(status)]);
        roff.text([roman(meaning)]);
    }
}

fn references(roff: &mut Roff, pages: &[(&str, &str)]) {
    roff.control("SH", ["SEE ALSO"]);
    let list: Vec<String> = pages
        .iter()
        .map(|(name, section)| format!("{name}({section})"))
        .collect();
    roff.text([roman(list.join(", "))]);
}

/// `pcl-cluster(5)`: the cluster file, every key with its values and
/// default.
fn cluster_page() -> Roff {
    let mut roff = Roff::new();
    roff.control("TH", ["pcl-cluster", "5", "", &source()]);
    roff.control("SH", ["NAME"]);
    roff.text([roman("pcl-cluster - the cluster file of pcl up")]);
    roff.control("SH", ["SYNOPSIS"]);
    roff.text([bold("pcl up"), roman(" "), italic("CLUSTER.toml")]);
    roff.control("SH", ["DESCRIPTION"]);
    roff.text([roman(
        "A TOML file naming the hosts to start engines on, and how. Unknown keys \
         and invalid values are errors that name the file, line and column. \
         cluster.example.toml, shipped with pcl, shows every key.",
    )]);
    for (place, heading) in [
        (Place::Top, "TOP-LEVEL KEYS"),
        (Place::Host, "HOST KEYS ([[hosts]] AND [defaults])"),
        (Place::Slurm, "SLURM KEYS ([slurm])"),
    ] {
        roff.control("SH", [heading]);
        for key in keys().into_iter().filter(|k| k.place == place) {
            roff.control("TP", []);
            roff.text([bold(key.name)]);
            roff.text([roman(key.meaning)]);
            roff.control("br", []);
            roff.text([italic("Values: "), roman(key.values)]);
            roff.control("br", []);
            roff.text([italic("Default: "), roman(key.default)]);
        }
    }
    roff.control("SH", ["EXAMPLE"]);
    roff.control("nf", []);
    for line in EXAMPLE.lines() {
        roff.text([roman(line)]);
    }
    roff.control("fi", []);
    references(
        &mut roff,
        &[("pcl", "1"), ("pcl-up", "1"), ("ssh_config", "5")],
    );
    roff
}

const EXAMPLE: &str = r#"name = "lab"
[defaults]
engines = 4
workdir = "~/pcl-work"
setup = "source ~/venv/bin/activate"
[[hosts]]
host = "node[01-16]"
engines = 8
user = "alice"
[[hosts]]
host = "localhost"
launcher = "local"
engines = 2"#;
