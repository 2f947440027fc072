//! When a host's paused pipes are read: on one grid for the whole engine
//! host, so that its engines' pipes are read in the same wakeup and their
//! tasks' results leave in one packet.

use std::sync::OnceLock;
use std::time::Duration;

use tokio::time::Instant;

/// The first point after `now` of a grid of `step`, counted from one
/// instant for the whole process, so that pipes paused at different
/// moments end their pauses together.
pub(super) fn next_on_grid(now: Instant, step: Duration) -> Instant {
    grid_after(now, grid_origin(), step)
}

pub(super) fn grid_origin() -> Instant {
    static ORIGIN: OnceLock<std::time::Instant> = OnceLock::new();
    Instant::from_std(*ORIGIN.get_or_init(std::time::Instant::now))
}

/// The first point after `now` of the points `origin + k * step`, for
/// any whole k (a runtime's clock may be behind the origin: tests pause
/// it).
pub(super) fn grid_after(now: Instant, origin: Instant, step: Duration) -> Instant {
    let step_ns = step.as_nanos().max(1);
    let span = |steps: u128| Duration::from_nanos((steps * step_ns) as u64);
    if now >= origin {
        origin + span((now - origin).as_nanos() / step_ns + 1)
    } else {
        origin - span((origin - now).as_nanos().div_ceil(step_ns) - 1)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::time::Instant;

    use super::grid_after;

    #[test]
    fn a_grid_point_is_the_first_after_the_instant_on_either_side_of_the_origin() {
        let origin = Instant::now() + Duration::from_secs(10);
        let step = Duration::from_millis(25);
        let ms = Duration::from_millis;
        for (now, next) in [
            (origin, origin + step),
            (origin + ms(1), origin + step),
            (origin + ms(24), origin + step),
            (origin + step, origin + step * 2),
            (origin + ms(1000), origin + ms(1025)),
            (origin - ms(1), origin),
            (origin - step, origin),
            (origin - ms(26), origin - step),
            (origin - ms(1000) - ms(1), origin - ms(1000)),
        ] {
            assert_eq!(grid_after(now, origin, step), next, "{now:?}");
        }
    }
}
