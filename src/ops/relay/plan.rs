//! Who feeds whom in a relayed push. The hosts form a pipelined chain:
//! the daemon sends to the first, and each passes the stream on to the
//! next as it arrives, so every link carries one copy whatever the host
//! count (a tree of fan-out k would carry k copies on each relay's link;
//! see the README for the measurement).

use std::ops::Range;

use crate::protocol::relay::RelayPeer;

/// Downstream peers per relay: 1 is a chain.
const FANOUT: usize = 1;

/// The member feeding member `i`; `None` for the first, fed by the daemon.
pub(super) fn upstream(i: usize) -> Option<usize> {
    (i > 0).then(|| (i - 1) / FANOUT)
}

/// The members member `i` of `n` passes the stream on to.
pub(super) fn downstream(i: usize, n: usize) -> Range<usize> {
    let first = (i * FANOUT + 1).min(n);
    first..(first + FANOUT).min(n)
}

/// Which of the hosts (by their peer address, `None` for one that takes
/// no part in relaying) can relay to one another. A loopback address is
/// reachable only from the machine itself, so loopback hosts relay among
/// themselves only when there is no other kind.
pub(in crate::ops) fn members(peers: &[Option<RelayPeer>]) -> Vec<usize> {
    let all = |loopback: bool| -> Vec<usize> {
        (0..peers.len())
            .filter(|&i| {
                peers[i]
                    .as_ref()
                    .is_some_and(|p| p.addr.ip().is_loopback() == loopback)
            })
            .collect()
    };
    let remote = all(false);
    let members = if remote.is_empty() { all(true) } else { remote };
    // One host alone has nobody to relay to.
    if members.len() < 2 {
        Vec::new()
    } else {
        members
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(addr: &str) -> Option<RelayPeer> {
        Some(RelayPeer {
            addr: addr.parse().unwrap(),
            fingerprint: "ff".into(),
        })
    }

    #[test]
    fn every_member_but_the_first_has_one_upstream_among_the_earlier_ones() {
        let n = 7;
        for i in 1..n {
            let up = upstream(i).unwrap();
            assert!(up < i);
            assert!(downstream(up, n).contains(&i));
        }
        assert_eq!(upstream(0), None);
        let fed: usize = (0..n).map(|i| downstream(i, n).len()).sum();
        assert_eq!(fed, n - 1, "each member is fed once");
    }

    #[test]
    fn loopback_hosts_relay_only_among_themselves() {
        let local = [peer("127.0.0.1:1"), peer("127.0.0.1:2"), None];
        assert_eq!(members(&local), [0, 1]);
        let mixed = [peer("127.0.0.1:1"), peer("10.0.0.1:2"), peer("10.0.0.2:3")];
        assert_eq!(members(&mixed), [1, 2]);
        let alone = [peer("10.0.0.1:2"), None, peer("127.0.0.1:1")];
        assert!(members(&alone).is_empty());
    }
}
