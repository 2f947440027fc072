//! The parser against ClusterShell 1.9.1's own answers.
//!
//! `cases.jsonl` holds, one JSON object a line, node set strings and what
//! ClusterShell's `NodeSet` (no group source) makes of them: `err` for a
//! refusal, else the name count `n`, the folded form `f` (`nodeset -f`)
//! and the names in `nodeset -e` order, as `e` or, for long sets, the
//! SHA-256 of the names joined by newlines. The strings are every one given
//! to `NodeSet`/`RangeSet` in ClusterShell's test suite (`NodeSetTest.py`;
//! `RangeSetTest.py`'s wrapped as `n[...]`), the differences named in pcl's
//! issue tracker, and generated unions, differences, intersections and
//! xors of multi-number names. `tests/peers.rs` checks the file against the
//! installed ClusterShell and pcl against both.

use super::*;

fn names(text: &str) -> Vec<String> {
    NodeSet::parse(text)
        .unwrap_or_else(|e| panic!("{text:?}: {e}"))
        .names()
}

fn fold(text: &str) -> String {
    NodeSet::parse(text).unwrap().fold()
}

#[test]
fn agrees_with_clustershell_on_its_cases() {
    let mut checked = 0;
    for line in include_str!("cases.jsonl").lines() {
        let case: serde_json::Value = serde_json::from_str(line).unwrap();
        let text = case["in"].as_str().unwrap();
        let parsed = NodeSet::parse(text);
        if case.get("err").is_some() {
            assert!(
                parsed.is_err(),
                "{text:?}: ClusterShell refuses it, pcl gave {parsed:?}"
            );
            checked += 1;
            continue;
        }
        let mut set =
            parsed.unwrap_or_else(|e| panic!("{text:?}: ClusterShell takes it, pcl: {e}"));
        let names = set.names();
        assert_eq!(names.len() as u64, case["n"].as_u64().unwrap(), "{text:?}");
        assert_eq!(set.fold(), case["f"].as_str().unwrap(), "{text:?} folded");
        if let Some(expected) = case.get("e") {
            let expected: Vec<&str> = expected
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n.as_str().unwrap())
                .collect();
            assert_eq!(names, expected, "{text:?}");
        } else {
            let digest = ring::digest::digest(&ring::digest::SHA256, names.join("\n").as_bytes());
            assert_eq!(
                hex::encode(digest),
                case["sha256"].as_str().unwrap(),
                "{text:?}: other names or another order"
            );
        }
        checked += 1;
    }
    assert!(checked > 900, "only {checked} cases");
}

#[test]
fn digits_next_to_a_bracket_join_its_bounds() {
    assert_eq!(names("node1[0-10]").len(), 101);
    assert_eq!(names("node1[0-10]")[..2], ["node10", "node11"]);
    assert_eq!(names("prod-2[10-320]").len(), 2111);
    assert_eq!(names("n[1-3]0"), ["n10", "n20", "n30"]);
}

#[test]
fn order_is_nodeset_e_order() {
    assert_eq!(names("cors,cors1"), ["cors", "cors1"]);
    assert_eq!(
        names("foo[2-3]bar4,foo3bar[2-3]"),
        ["foo3bar2", "foo3bar3", "foo3bar4", "foo2bar4"]
    );
    assert_eq!(
        names("x[8-11],x[07-09]"),
        ["x8", "x9", "x07", "x08", "x09", "x10", "x11"]
    );
    assert_eq!(names("n[1-3,7],login1"), ["login1", "n1", "n2", "n3", "n7"]);
}

#[test]
fn typos_are_refused() {
    for text in [
        "nova6,",
        "0[7-10]",
        "prod-0[01-06/2]0",
        "foo!",
        "foo&",
        "foo^",
        ",a",
        "a,,b",
        "n[1-",
        "n[3-1]",
        "n]1[",
        "n[1][2]",
        "n[a]",
        "n[1-2/0]",
    ] {
        assert!(NodeSet::parse(text).is_err(), "{text:?} was taken");
    }
}

#[test]
fn percent_spaces_and_bare_ranges() {
    assert_eq!(names("cluster%eth0"), ["cluster%eth0"]);
    assert_eq!(
        names("fe80::5054:ff:feff:6944%eth0"),
        ["fe80::5054:ff:feff:6944%eth0"]
    );
    assert_eq!(
        names("tigrou[ 9 - 11 ]"),
        ["tigrou9", "tigrou10", "tigrou11"]
    );
    assert_eq!(names("1-5"), ["1-5"]);
    assert_eq!(names("tigrou 0, tigrou [1]"), ["tigrou 0", "tigrou 1"]);
}

#[test]
fn operators() {
    let all: Vec<String> = (1..=64)
        .filter(|&i| i != 13)
        .map(|i| format!("node{i:02}"))
        .collect();
    assert_eq!(names("node[01-64]!node13"), all);
    assert_eq!(
        names("node[01-08]&node[06-12]"),
        ["node06", "node07", "node08"]
    );
    assert_eq!(fold("node[01-10]^node[05-15]"), "node[01-04,11-15]");
    assert_eq!(names("login&login"), ["login"]);
    assert_eq!(
        fold("rack[1-2]node[01-04]!rack2node03"),
        "rack1node[01-04],rack2node[01-02,04]"
    );
}

#[test]
fn groups_and_huge_sets_are_refused() {
    assert_eq!(
        NodeSet::parse("rab,@*,oof").unwrap_err(),
        NodeSetError::Group
    );
    assert_eq!(NodeSet::parse("@compute").unwrap_err(), NodeSetError::Group);
    assert!(NodeSet::parse("n[1-2000000]").is_err());
    assert_eq!(
        NodeSet::parse("a[1-1024]b[1-1024]c[1-2]").unwrap_err(),
        NodeSetError::TooMany
    );
    // Fine as one block, refused once a hole means folding name by name.
    assert_eq!(fold("a[1-1000]b[1-1000]"), "a[1-1000]b[1-1000]");
    assert_eq!(
        NodeSet::parse("a[1-1000]b[1-1000]!a1b1").unwrap_err(),
        NodeSetError::TooTangled
    );
}

#[test]
fn folds_names_pcl_already_has() {
    let mut set = NodeSet::from_names(["node02", "node01", "login", "node10", "cluster%eth0"]);
    assert_eq!(set.fold(), "cluster%eth0,login,node[01-02,10]");
}
