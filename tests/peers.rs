//! pcl held against the tools its users already know, run for real side by
//! side with it: ClusterShell's `nodeset` for host ranges, pdsh's
//! `dshbak -c` for `px -b`, GNU `parallel` for `map --joblog`. A test whose
//! tool is missing prints `SKIPPED` and passes (fails with
//! `PCL_TEST_REQUIRE=1`); `scripts/test.sh` installs them.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The node set cases the unit tests hold ClusterShell's answers for.
const CASES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/src/config/nodeset/cases.jsonl"
);

/// Reads JSON strings on stdin, one a line, and answers each with what
/// ClusterShell's NodeSet (no group source, like pcl) makes of it.
const CLUSTERSHELL_ORACLE: &str = r#"
import sys, json
from ClusterShell.NodeSet import NodeSet, RESOLVER_NOGROUP
for line in sys.stdin:
    try:
        ns = NodeSet(json.loads(line), resolver=RESOLVER_NOGROUP)
        print(json.dumps({"e": list(ns), "f": str(ns)}))
    except Exception:
        print(json.dumps({"err": True}))
"#;

/// `pcl nodeset [-f] SET`: the expansion (names joined by spaces, as
/// `nodeset -e` prints them) or the folded form; `None` if refused.
fn pcl_nodeset(set: &str, fold: bool) -> Option<String> {
    let mut cmd = Cmd::new(PCL).arg("nodeset");
    if fold {
        cmd = cmd.arg("-f");
    }
    let out = cmd.arg(set).run();
    (out.code == Some(0)).then(|| out.stdout_str().trim_end_matches('\n').to_string())
}

/// The interpreter `nodeset` runs under, from its `#!` line, so the
/// oracle imports the same ClusterShell.
fn python_of(script: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(script).expect("read nodeset");
    let first = text.lines().next().unwrap_or_default();
    let interpreter = first.strip_prefix("#!").expect("nodeset is a script");
    interpreter.split_whitespace().map(str::to_string).collect()
}

#[test]
fn nodeset_agrees_on_clustershells_own_cases() {
    let Some(nodeset) = peer_tool("nodeset", "clustershell") else {
        return;
    };
    // The few sets of over 100,000 names take long to print twice over;
    // the unit tests check those against the recorded answers.
    let cases: Vec<serde_json::Value> = std::fs::read_to_string(CASES)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|c| c["n"].as_u64().is_none_or(|n| n <= 100_000))
        .collect();
    let inputs: String = cases.iter().map(|c| format!("{}\n", c["in"])).collect();
    let python = python_of(&nodeset);
    let out = Cmd::new(&python[0])
        .args(&python[1..])
        .args(["-c", CLUSTERSHELL_ORACLE])
        .stdin(inputs)
        .timeout_secs(300)
        .run()
        .success();
    let answers: Vec<serde_json::Value> = out
        .stdout_lines()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(answers.len(), cases.len());
    let mut disagree = Vec::new();
    for (case, truth) in cases.iter().zip(&answers) {
        let text = case["in"].as_str().unwrap();
        // The recorded answer is still ClusterShell's.
        assert_eq!(
            case.get("err").is_some(),
            truth.get("err").is_some(),
            "{text:?}: cases.jsonl is stale"
        );
        let expected = truth.get("e").map(|names| {
            let names: Vec<&str> = names
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n.as_str().unwrap())
                .collect();
            assert_eq!(names.len() as u64, case["n"].as_u64().unwrap(), "{text:?}");
            assert_eq!(truth["f"], case["f"], "{text:?}: cases.jsonl is stale");
            (names.join(" "), truth["f"].as_str().unwrap().to_string())
        });
        let got = pcl_nodeset(text, false).map(|e| (e, pcl_nodeset(text, true).unwrap()));
        if got != expected {
            disagree.push(format!(
                "{text:?}: ClusterShell {expected:.200?}, pcl {got:.200?}"
            ));
        }
    }
    assert!(
        disagree.is_empty(),
        "{} of {} cases differ:\n{}",
        disagree.len(),
        cases.len(),
        disagree.join("\n")
    );
}

/// The differences the issue tracker listed, through the `nodeset` command
/// itself.
#[test]
fn nodeset_command_agrees_on_the_reported_differences() {
    let Some(nodeset) = peer_tool("nodeset", "clustershell") else {
        return;
    };
    let sets = [
        "node1[0-10]",
        "prod-2[10-320]",
        "cors,cors1",
        "foo[2-3]bar4,foo3bar[2-3]",
        "nova6,",
        "0[7-10]",
        "prod-0[01-06/2]0",
        "foo!",
        "foo&",
        "foo^",
        "cluster%eth0",
        "fe80::5054:ff:feff:6944%eth0",
        "tigrou[ 9 - 11 ]",
        "1-5",
        "tigrou 0, tigrou [1]",
        "login&login",
        "node[01-64]!node13",
        "node[01-64]&node[60-99]",
        "node[01-10]^node[05-15]",
        "rack[1-2]node[01-04]!rack2node03",
    ];
    for set in sets {
        for (flag, fold) in [("-e", false), ("-f", true)] {
            let out = Cmd::new(&nodeset).args([flag, set]).run();
            let theirs =
                (out.code == Some(0)).then(|| out.stdout_str().trim_end_matches('\n').to_string());
            assert_eq!(pcl_nodeset(set, fold), theirs, "nodeset {flag} {set:?}");
        }
    }
}

/// Engine ids follow the names in `nodeset -e` order, table by table, and
/// `-t` takes the same operators.
#[test]
fn engine_ids_follow_nodeset_order() {
    let Some(nodeset) = peer_tool("nodeset", "clustershell") else {
        return;
    };
    let expand = |set: &str| -> Vec<String> {
        Cmd::new(&nodeset)
            .args(["-e", "-S", "\\n", set])
            .run()
            .success()
            .stdout_lines()
    };
    let (first, second) = ("cors1,cors,foo[2-3]bar4,foo3bar[2-3]", "node1[0-2]!node11");
    let env = Env::new();
    let cluster = env.write(
        "cluster.toml",
        format!(
            "[[hosts]]\nhost = \"{first}\"\nlauncher = \"local\"\n\
             [[hosts]]\nhost = \"{second}\"\nlauncher = \"local\"\nengines = 2\n"
        ),
    );
    let table = env.up([&cluster]);
    let mut expected: Vec<String> = expand(first);
    expected.extend(expand(second).into_iter().flat_map(|h| [h.clone(), h]));
    let hosts: Vec<String> = table.iter().map(|(_, h)| h.clone()).collect();
    assert_eq!(hosts, expected, "engine table: {table:?}");

    let out = env
        .px(["-t", "foo[2-3]bar4!foo2bar4", "echo $PCL_HOST"])
        .success();
    let id = table.iter().find(|(_, h)| h == "foo3bar4").unwrap().0;
    assert_eq!(out.stdout_str(), format!("[stdout:{id}] foo3bar4\n"));

    // `-b` folds the hosts of a block as `nodeset -f` does.
    let folded = Cmd::new(&nodeset)
        .args(["-f", &hosts.join(",")])
        .run()
        .success()
        .stdout_str();
    let out = env.px(["-b", "echo same"]).success();
    let header = format!("[0-{}] {}", hosts.len() - 1, folded.trim_end());
    assert_eq!(out.stdout_lines()[1], header, "{}", out.describe());
}

/// `dshbak -c`'s input for these outputs: `e<ID>: line` for every line.
fn dshbak_input(outputs: &[(u32, String)]) -> String {
    let mut input = String::new();
    for (id, stdout) in outputs {
        for line in stdout.lines() {
            input.push_str(&format!("e{id}: {line}\n"));
        }
    }
    input
}

/// pcl's `-b` output with each header's hosts dropped and its ids named as
/// `dshbak` names hosts `e<ID>` (`[0-3]` -> `e[0-3]`, `7` -> `e7`).
fn as_dshbak_names(pcl: &str) -> String {
    let divider = "-".repeat(16);
    let mut out = String::new();
    let mut lines = pcl.lines().peekable();
    while let Some(line) = lines.next() {
        out.push_str(line);
        out.push('\n');
        if line == divider {
            if let Some(header) = lines.next() {
                let ids = header.split(' ').next().unwrap();
                out.push_str(&format!("e{ids}\n"));
            }
            if let Some(div) = lines.next() {
                out.push_str(div);
                out.push('\n');
            }
        }
    }
    out
}

#[test]
fn px_b_agrees_with_dshbak_c() {
    let Some(dshbak) = peer_tool("dshbak", "pdsh") else {
        return;
    };
    let env = Env::new();
    let cluster = env.cluster_local(5);
    env.up([&cluster]);
    let scenarios = [
        "echo same",
        "echo $PCL_ENGINE_ID",
        "echo $(( PCL_ENGINE_ID % 2 )); echo tail",
        "if [ $PCL_ENGINE_ID -lt 3 ]; then echo some; fi",
        "if [ $PCL_ENGINE_ID -eq 4 ]; then echo only; fi",
        "true",
        "printf 'a\\n\\nb\\n'; [ $PCL_ENGINE_ID -eq 1 ] && echo extra; true",
        "printf '  indented\\n\\tand tabbed\\n'",
        "seq 1 $(( PCL_ENGINE_ID + 1 ))",
    ];
    for command in scenarios {
        let json = env.px(["--json", command]);
        let doc: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
        let outputs: Vec<(u32, String)> = doc["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["id"].as_u64().unwrap() as u32,
                    r["stdout"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let theirs = Cmd::new(&dshbak)
            .arg("-c")
            .stdin(dshbak_input(&outputs))
            .run()
            .success()
            .stdout_str();
        let ours = env.px(["-b", command]);
        assert_eq!(
            as_dshbak_names(&ours.stdout_str()),
            theirs,
            "{command}\n{}",
            ours.describe()
        );
        // Each header names the engines' host too.
        let lines = ours.stdout_lines();
        let divider = "-".repeat(16);
        let mut i = 0;
        while i < lines.len() {
            if lines[i] == divider {
                assert!(lines[i + 1].ends_with(" localhost"), "{}", lines[i + 1]);
                i += 2;
            }
            i += 1;
        }
    }
}

/// Where dshbak cannot tell `x` from `x\n` (pdsh ends every line), pcl says
/// which block lacks the final newline.
#[test]
fn px_b_tells_a_missing_final_newline() {
    let Some(dshbak) = peer_tool("dshbak", "pdsh") else {
        return;
    };
    let env = Env::new();
    let cluster = env.cluster_local(3);
    env.up([&cluster]);
    let out = env
        .px([
            "-b",
            "if [ $PCL_ENGINE_ID -eq 1 ]; then printf x; else echo x; fi",
        ])
        .success();
    let div = "-".repeat(16);
    assert_eq!(
        out.stdout_str(),
        format!(
            "{div}\n[0,2] localhost\n{div}\nx\n{div}\n1 localhost\n{div}\nx\n(no newline at end)\n"
        )
    );
    let theirs = Cmd::new(&dshbak)
        .arg("-c")
        .stdin("e0: x\ne1: x\ne2: x\n")
        .run()
        .success()
        .stdout_str();
    assert_eq!(theirs, format!("{div}\ne[0-2]\n{div}\nx\n"));
}

/// A joblog's header and its rows by Seq, each split into its 9 fields.
fn read_joblog(path: &Path) -> (Option<String>, BTreeMap<u64, Vec<String>>) {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let mut header = None;
    let mut rows = BTreeMap::new();
    for line in text.lines() {
        if line.starts_with("Seq\t") {
            header = Some(line.to_string());
            continue;
        }
        let fields: Vec<String> = line.splitn(9, '\t').map(str::to_string).collect();
        assert_eq!(fields.len(), 9, "{path:?}: {line:?}");
        rows.insert(fields[0].parse().unwrap(), fields);
    }
    (header, rows)
}

/// Starttime is `%.3f` seconds and JobRuntime `%10.3f`, as GNU writes them.
fn assert_time_formats(row: &[String]) {
    let three_decimals = |s: &str| {
        s.split_once('.').is_some_and(|(whole, frac)| {
            !whole.is_empty() && whole.bytes().all(|b| b.is_ascii_digit()) && frac.len() == 3
        })
    };
    assert!(three_decimals(&row[2]), "Starttime {:?}", row[2]);
    assert_eq!(row[3].len(), 10, "JobRuntime {:?}", row[3]);
    assert!(
        three_decimals(row[3].trim_start()),
        "JobRuntime {:?}",
        row[3]
    );
}

/// What GNU parallel and `pcl map` each log for the same command and items,
/// compared field by field (the times only by format).
#[test]
fn joblog_agrees_with_gnu_parallel() {
    let Some(parallel) = peer_tool("parallel", "parallel") else {
        return;
    };
    let env = Env::new();
    let cluster = env.cluster_local(2);
    env.up([&cluster]);
    let scenarios: [(&str, &[&str], &[&str]); 6] = [
        ("echo {}", &["1", "2", "3"], &[]),
        // Killed by a signal: Exitval 0, the signal in Signal.
        ("sh -c 'kill -{} $$'", &["TERM", "KILL", "INT", "HUP"], &[]),
        ("exit {}", &["0", "1", "3"], &[]),
        // Stopped by --timeout: Exitval -1, Signal 15.
        ("sleep {}", &["5"], &["--timeout", "1"]),
        // One row per item, its last try's.
        ("echo x; exit {}", &["3", "0"], &["--retries", "3"]),
        // A newline in the command is written as NUL.
        ("echo start {}\nexit {}", &["0", "1"], &[]),
    ];
    for (i, (template, items, options)) in scenarios.iter().enumerate() {
        let (gnu_log, pcl_log) = (
            env.path().join(format!("gnu{i}")),
            env.path().join(format!("pcl{i}")),
        );
        env.cmd(&parallel)
            .arg("--will-cite")
            .arg("--joblog")
            .arg(&gnu_log)
            .args(*options)
            .arg(template)
            .arg(":::")
            .args(*items)
            .run();
        env.pcl(["map", "--joblog"])
            .arg(&pcl_log)
            .args(*options)
            .arg(template)
            .args(*items)
            .run();
        let (gnu_header, gnu) = read_joblog(&gnu_log);
        let (pcl_header, pcl) = read_joblog(&pcl_log);
        assert_eq!(pcl_header, gnu_header);
        assert_eq!(pcl.len(), items.len(), "{template}: {pcl:?}");
        assert_eq!(
            pcl.keys().collect::<Vec<_>>(),
            gnu.keys().collect::<Vec<_>>(),
            "{template}"
        );
        for (seq, theirs) in &gnu {
            let ours = &pcl[seq];
            assert_time_formats(ours);
            for field in [1, 4, 5, 6, 7, 8] {
                assert_eq!(
                    ours[field], theirs[field],
                    "{template:?} item {seq}, field {field}\n  GNU: {theirs:?}\n  pcl: {ours:?}"
                );
            }
        }
    }

    // parallel --retry-failed on pcl's log reruns the failed item's
    // command, newline and all.
    let out = env
        .cmd(&parallel)
        .arg("--will-cite")
        .arg("--retry-failed")
        .arg("--joblog")
        .arg(env.path().join("pcl5"))
        .run()
        .assert_exit(1);
    assert_eq!(out.stdout_str(), "start 1\n");
}

/// Where a shell's status cannot tell: a task that exits 128+N itself is
/// logged as killed by signal N (see the README).
#[test]
fn joblog_reads_status_above_128_as_a_signal() {
    let Some(parallel) = peer_tool("parallel", "parallel") else {
        return;
    };
    let env = Env::new();
    let cluster = env.cluster_local(1);
    env.up([&cluster]);
    let (gnu_log, pcl_log) = (env.path().join("gnu"), env.path().join("pcl"));
    env.cmd(&parallel)
        .args(["--will-cite", "--joblog"])
        .arg(&gnu_log)
        .args(["exit {}", ":::", "130"])
        .run();
    env.pcl(["map", "--joblog"])
        .arg(&pcl_log)
        .args(["exit {}", "130"])
        .run();
    let gnu = &read_joblog(&gnu_log).1[&1];
    let pcl = &read_joblog(&pcl_log).1[&1];
    assert_eq!((gnu[6].as_str(), gnu[7].as_str()), ("130", "0"));
    assert_eq!((pcl[6].as_str(), pcl[7].as_str()), ("0", "2"));
}

/// `--joblog +FILE` appends, with no header of its own, as GNU's does.
#[test]
fn joblog_plus_file_appends_like_gnu_parallel() {
    let Some(parallel) = peer_tool("parallel", "parallel") else {
        return;
    };
    let env = Env::new();
    let cluster = env.cluster_local(1);
    env.up([&cluster]);
    let shape = |path: &Path| -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| {
                let f: Vec<&str> = l.split('\t').collect();
                format!("{} {} {}", f[0], f[1], f[8])
            })
            .collect()
    };
    let (gnu, pcl) = (env.path().join("gnu.log"), env.path().join("pcl.log"));
    let plus = |p: &PathBuf| format!("+{}", p.display());
    for (append, item) in [(false, "1"), (true, "2"), (true, "3")] {
        let (g, p) = if append {
            (plus(&gnu), plus(&pcl))
        } else {
            (gnu.display().to_string(), pcl.display().to_string())
        };
        env.cmd(&parallel)
            .args(["--will-cite", "--joblog", &g, "echo {}", ":::", item])
            .run()
            .success();
        env.pcl(["map", "--joblog", &p, "echo {}", item])
            .run()
            .success();
    }
    assert_eq!(shape(&pcl), shape(&gnu));
    assert_eq!(shape(&pcl).len(), 4, "a header and three rows");

    // On a file that does not exist yet: rows only, no header.
    let (gnu, pcl) = (env.path().join("gnu2.log"), env.path().join("pcl2.log"));
    env.cmd(&parallel)
        .args([
            "--will-cite",
            "--joblog",
            &plus(&gnu),
            "echo {}",
            ":::",
            "1",
        ])
        .run()
        .success();
    env.pcl(["map", "--joblog", &plus(&pcl), "echo {}", "1"])
        .run()
        .success();
    assert_eq!(shape(&pcl), shape(&gnu));
}
