//! The state of the daemon's link to one engine host, and its transitions
//! as plain methods: no I/O, no clock, so each can be stepped in a unit
//! test. The connection type is a parameter for that reason.
//!
//! Every launch of the host starts a new generation; the watchers of an
//! older engine host process or connection carry their generation, and a
//! transition asked for by a stale watcher changes nothing.

/// Where one host's link is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Link<C> {
    Launching,
    Up(C),
    /// Lost; the same engine host (same pinned certificate) is being
    /// dialled again until the host's reconnect grace runs out.
    Reconnecting(String),
    Down(String),
}

/// A host's link and the generation of the launch it belongs to.
#[derive(Debug)]
pub(super) struct LinkState<C> {
    link: Link<C>,
    generation: u64,
}

impl<C: Clone> LinkState<C> {
    pub(super) fn new() -> Self {
        LinkState {
            link: Link::Launching,
            generation: 0,
        }
    }

    pub(super) fn link(&self) -> &Link<C> {
        &self.link
    }

    /// A new launch: later transitions of the older one are ignored.
    /// Returns the new generation.
    pub(super) fn relaunch(&mut self) -> u64 {
        self.generation += 1;
        self.link = Link::Launching;
        self.generation
    }

    fn is_current(&self, generation: u64) -> bool {
        self.generation == generation
    }

    /// The engine host answered its start.
    pub(super) fn connected(&mut self, generation: u64, connection: C) -> bool {
        if !self.is_current(generation) || !matches!(self.link, Link::Launching) {
            return false;
        }
        self.link = Link::Up(connection);
        true
    }

    /// The connection closed: reconnect if this is the current, live link.
    /// `false` means the watcher has nothing more to do.
    pub(super) fn lost(&mut self, generation: u64, reason: &str) -> bool {
        if !self.is_current(generation) || !matches!(self.link, Link::Up(_)) {
            return false;
        }
        self.link = Link::Reconnecting(format!("connection lost: {reason}"));
        true
    }

    /// Whether a re-dial is still wanted (the link was not given up or
    /// replaced meanwhile).
    pub(super) fn still_reconnecting(&self, generation: u64) -> bool {
        self.is_current(generation) && matches!(self.link, Link::Reconnecting(_))
    }

    /// A re-dial reached the same engine host again.
    pub(super) fn redialled(&mut self, generation: u64, connection: C) -> bool {
        if !self.still_reconnecting(generation) {
            return false;
        }
        self.link = Link::Up(connection);
        true
    }

    /// The host is gone (its process exited, its launch failed, or it did
    /// not come back within the grace), unless it already is or a newer
    /// launch took its place.
    pub(super) fn down(&mut self, generation: u64, reason: String) {
        if self.is_current(generation) && !matches!(self.link, Link::Down(_)) {
            self.link = Link::Down(reason);
        }
    }

    /// The session stops: the link is down whatever it was, and the
    /// connection it had (if up) is handed back to be closed.
    pub(super) fn stop(&mut self) -> Option<C> {
        match std::mem::replace(&mut self.link, Link::Down("session stopped".into())) {
            Link::Up(connection) => Some(connection),
            _ => None,
        }
    }

    /// The connection, while the link is up.
    pub(super) fn connection(&self) -> Option<C> {
        match &self.link {
            Link::Up(connection) => Some(connection.clone()),
            _ => None,
        }
    }

    pub(super) fn is_down(&self) -> bool {
        matches!(self.link, Link::Down(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type State = LinkState<&'static str>;

    fn up() -> (State, u64) {
        let mut s = State::new();
        let generation = s.relaunch();
        assert!(s.connected(generation, "c1"));
        (s, generation)
    }

    #[test]
    fn a_lost_link_is_redialled_and_comes_back_up() {
        let (mut s, g) = up();
        assert!(s.lost(g, "timed out"));
        assert_eq!(
            s.link(),
            &Link::Reconnecting("connection lost: timed out".into())
        );
        assert!(s.connection().is_none(), "no calls while reconnecting");
        assert!(s.still_reconnecting(g));
        assert!(s.redialled(g, "c2"));
        assert_eq!(s.connection(), Some("c2"));
        assert!(!s.still_reconnecting(g));
    }

    #[test]
    fn a_grace_that_expires_gives_the_host_up() {
        let (mut s, g) = up();
        assert!(s.lost(g, "timed out"));
        s.down(g, "not back within 60 s".into());
        assert_eq!(s.link(), &Link::Down("not back within 60 s".into()));
        assert!(!s.still_reconnecting(g));
        assert!(!s.redialled(g, "late"), "a late answer does not revive it");
        assert!(s.is_down());
    }

    #[test]
    fn watchers_of_an_older_generation_change_nothing() {
        let (mut s, old) = up();
        s.down(old, "engine host exited".into());
        let new = s.relaunch();
        assert!(s.connected(new, "fresh"));
        // The old engine host's watchers wake up late.
        assert!(!s.lost(old, "closed"));
        s.down(old, "engine host exited".into());
        assert!(!s.redialled(old, "stale"));
        assert_eq!(s.connection(), Some("fresh"));
        assert!(!s.connected(old, "stale"));
    }

    #[test]
    fn only_a_live_link_can_be_lost_and_a_down_one_keeps_its_reason() {
        let mut s = State::new();
        let g = s.relaunch();
        assert!(!s.lost(g, "closed"), "not up yet");
        s.down(g, "ssh: connection refused".into());
        s.down(g, "later reason".into());
        assert_eq!(s.link(), &Link::Down("ssh: connection refused".into()));
        assert!(!s.connected(g, "c"), "a failed launch does not come up");
    }

    #[test]
    fn stopping_hands_back_the_connection_once() {
        let (mut s, g) = up();
        assert_eq!(s.stop(), Some("c1"));
        assert_eq!(s.link(), &Link::Down("session stopped".into()));
        assert_eq!(s.stop(), None);
        assert!(!s.lost(g, "closed"), "a stopped session does not reconnect");
    }
}
