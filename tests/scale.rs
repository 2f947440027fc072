//! 64 namespace hosts x 4 engines = 256 engines on one machine: up, one
//! px across all of them, down, and nothing left anywhere. One test, so
//! the hosts are made once. Needs root and iproute2; skipped otherwise.

mod common;

use common::*;
use std::collections::BTreeMap;

#[test]
fn scale_256_engines_on_64_namespace_hosts() {
    let Some(hosts) = NetnsHosts::new(64) else {
        return;
    };
    let env = Env::new();
    let cluster = env.cluster_netns(&hosts, 4);
    let out = env
        .pcl(["up", &cluster.to_string_lossy()])
        .timeout_secs(300)
        .run()
        .success();
    let table = parse_engine_table(&out);
    assert_eq!(
        table.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        (0..256).collect::<Vec<_>>(),
        "{}",
        out.describe()
    );
    let mut per_host: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, host) in &table {
        *per_host.entry(host).or_default() += 1;
    }
    assert_eq!(per_host.len(), 64);
    assert!(per_host.values().all(|&n| n == 4), "{per_host:?}");
    eprintln!("pcl up of 256 engines: {:.2?}", out.elapsed);

    let out = env
        .pcl(["px", "echo $PCL_ENGINE_ID/$PCL_ENGINE_COUNT@$(hostname -I)"])
        .timeout_secs(120)
        .run()
        .success();
    let got: Vec<(u32, String)> = px_stdout_lines(&out)
        .into_iter()
        .map(|(id, text)| (id, text.trim_end().to_string()))
        .collect();
    let want: Vec<(u32, String)> = table
        .iter()
        .map(|(id, host)| (*id, format!("{id}/256@{host}")))
        .collect();
    assert_eq!(got, want, "{}", out.describe());
    eprintln!("px across 256 engines: {:.2?}", out.elapsed);

    let out = env.pcl(["down"]).timeout_secs(120).run().success();
    eprintln!("pcl down of 256 engines: {:.2?}", out.elapsed);
    assert_nothing_left(&env.session);
    hosts.assert_only_sshd_left();
}
