//! How `transport = "auto"` chooses between UDP and the ssh channel. UDP
//! that connects within the probe carries the session. Past the probe the
//! channel is dialled as well, and the UDP attempt goes on beside it: the
//! first of the two to connect wins. A host that is merely slow (a login
//! node busy with a thousand logins took over 3 s to finish a handshake)
//! keeps UDP when its answer comes before the channel's, and a host whose
//! UDP is blocked costs no more than before: the channel is dialled at the
//! same moment.

use std::time::Duration;

/// What the race found.
#[derive(Debug, PartialEq)]
pub(super) enum Raced<T, E, C, CE> {
    /// UDP connected first.
    Udp(T),
    /// The channel's outcome (an error only when UDP failed too), and
    /// why UDP does not carry the session.
    Channel(Result<C, CE>, UdpMiss<E>),
}

/// Why UDP lost the race.
#[derive(Debug, PartialEq)]
pub(super) enum UdpMiss<E> {
    /// Nothing had connected when the channel did.
    Slow,
    /// The UDP attempt failed.
    Failed(E),
}

/// Race `udp` against the channel that `channel` dials, giving UDP a
/// head start of `probe`; UDP failing within it has the channel dialled
/// at once.
pub(super) async fn race<T, E, C, CE, Channel>(
    udp: impl Future<Output = Result<T, E>>,
    channel: impl FnOnce() -> Channel,
    probe: Duration,
) -> Raced<T, E, C, CE>
where
    Channel: Future<Output = Result<C, CE>>,
{
    let mut udp = std::pin::pin!(udp);
    tokio::select! {
        dialled = &mut udp => return match dialled {
            Ok(connection) => Raced::Udp(connection),
            Err(e) => Raced::Channel(channel().await, UdpMiss::Failed(e)),
        },
        _ = tokio::time::sleep(probe) => {}
    }
    let mut channel = std::pin::pin!(channel());
    tokio::select! {
        // Both ready in one turn: UDP, the faster path, is taken.
        biased;
        dialled = &mut udp => match dialled {
            Ok(connection) => Raced::Udp(connection),
            Err(e) => Raced::Channel(channel.await, UdpMiss::Failed(e)),
        },
        dialled = &mut channel => match dialled {
            Ok(connection) => Raced::Channel(Ok(connection), UdpMiss::Slow),
            // A channel that failed leaves UDP the only way left.
            Err(channel_error) => match udp.await {
                Ok(connection) => Raced::Udp(connection),
                Err(e) => Raced::Channel(Err(channel_error), UdpMiss::Failed(e)),
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::time::Duration;

    use super::{Raced, UdpMiss, race};

    const PROBE: Duration = Duration::from_secs(3);

    /// A dial that ends after `secs`, as `outcome`.
    async fn after<T>(secs: f64, outcome: T) -> T {
        tokio::time::sleep(Duration::from_secs_f64(secs)).await;
        outcome
    }

    type Outcome = Raced<&'static str, &'static str, &'static str, &'static str>;

    /// The race, with UDP's and the channel's dials taking `udp` and
    /// `channel` seconds (the channel's counted from when it is dialled);
    /// also whether the channel was dialled at all.
    async fn run(
        udp: (f64, Result<&'static str, &'static str>),
        channel: (f64, Result<&'static str, &'static str>),
    ) -> (Outcome, bool) {
        let dialled = Cell::new(false);
        let outcome = race(
            after(udp.0, udp.1),
            || {
                dialled.set(true);
                after(channel.0, channel.1)
            },
            PROBE,
        )
        .await;
        (outcome, dialled.get())
    }

    #[tokio::test(start_paused = true)]
    async fn udp_within_the_probe_is_taken_and_the_channel_never_dialled() {
        let (outcome, dialled) = run((0.2, Ok("udp")), (0.1, Ok("channel"))).await;
        assert_eq!(outcome, Raced::Udp("udp"));
        assert!(!dialled);
    }

    #[tokio::test(start_paused = true)]
    async fn udp_that_fails_within_the_probe_has_the_channel_dialled_at_once() {
        let started = tokio::time::Instant::now();
        let (outcome, _) = run((1.0, Err("refused")), (0.1, Ok("channel"))).await;
        assert_eq!(
            outcome,
            Raced::Channel(Ok("channel"), UdpMiss::Failed("refused"))
        );
        assert_eq!(started.elapsed(), Duration::from_secs_f64(1.1));
    }

    #[tokio::test(start_paused = true)]
    async fn slow_udp_is_kept_when_it_answers_before_the_channel() {
        // Before the race, an answer at 4 s lost to the 3 s probe.
        let (outcome, dialled) = run((4.0, Ok("udp")), (2.0, Ok("channel"))).await;
        assert_eq!(outcome, Raced::Udp("udp"));
        assert!(dialled);
    }

    #[tokio::test(start_paused = true)]
    async fn the_channel_wins_over_slow_or_blocked_udp_at_the_probe_plus_its_own_time() {
        for udp in [(4.0, Ok("udp")), (15.0, Err("no answer"))] {
            let started = tokio::time::Instant::now();
            let (outcome, _) = run(udp, (0.5, Ok("channel"))).await;
            assert_eq!(
                outcome,
                Raced::Channel(Ok("channel"), UdpMiss::Slow),
                "{udp:?}"
            );
            assert_eq!(started.elapsed(), Duration::from_secs_f64(3.5), "{udp:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn udp_failing_after_the_probe_leaves_the_channel() {
        let (outcome, _) = run((5.0, Err("reset")), (4.0, Ok("channel"))).await;
        assert_eq!(
            outcome,
            Raced::Channel(Ok("channel"), UdpMiss::Failed("reset"))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_channel_waits_for_udp_still_under_way() {
        let (outcome, _) = run((6.0, Ok("udp")), (0.5, Err("channel closed"))).await;
        assert_eq!(outcome, Raced::Udp("udp"));
        let (outcome, _) = run((6.0, Err("no answer")), (0.5, Err("channel closed"))).await;
        assert_eq!(
            outcome,
            Raced::Channel(Err("channel closed"), UdpMiss::Failed("no answer"))
        );
    }
}
