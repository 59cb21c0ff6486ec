//! Re-authentication grants: which bus connections may make sensitive calls.
//!
//! A grant belongs to one connection (its unique name, e.g. `:1.42`) and the
//! uid that authenticated on it. It is either good for exactly one sensitive
//! call or until a deadline. It dies with the connection (`forget`, called
//! when the bus announces that the unique name has gone), so a second
//! connection of the same user is never elevated by the first one's
//! password. Time is passed in, so tests need no clock.

use std::collections::HashMap;
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Consumed by the next sensitive call.
    OneCall,
    /// Any number of sensitive calls before this instant.
    Until(Instant),
}

#[derive(Debug, Default)]
pub struct Grants {
    by_conn: HashMap<String, (u32, Kind)>,
}

impl Grants {
    /// Give `conn` (authenticated as `uid`) a grant, replacing any older one.
    pub fn grant(&mut self, conn: &str, uid: u32, kind: Kind) {
        self.by_conn.insert(conn.to_owned(), (uid, kind));
    }

    /// Use the grant of `conn` for one sensitive call: true if it had a
    /// valid one for `uid`. A one-call grant is gone afterwards; an expired
    /// or mismatched one is dropped.
    pub fn consume(&mut self, conn: &str, uid: u32, now: Instant) -> bool {
        let Some(&(owner, kind)) = self.by_conn.get(conn) else {
            return false;
        };
        let ok = owner == uid
            && match kind {
                Kind::OneCall => true,
                Kind::Until(t) => now < t,
            };
        if !ok || kind == Kind::OneCall {
            self.by_conn.remove(conn);
        }
        ok
    }

    /// The connection has gone: drop its grant. True if it had one.
    pub fn forget(&mut self, conn: &str) -> bool {
        self.by_conn.remove(conn).is_some()
    }

    /// Drop every grant that can no longer be used.
    pub fn prune(&mut self, now: Instant) {
        self.by_conn.retain(|_, (_, k)| match k {
            Kind::OneCall => true,
            Kind::Until(t) => now < *t,
        });
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.by_conn.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn one_call() {
        let t0 = Instant::now();
        let mut g = Grants::default();
        assert!(!g.consume(":1.1", 0, t0));
        g.grant(":1.1", 0, Kind::OneCall);
        assert_eq!(g.len(), 1);
        assert!(g.consume(":1.1", 0, t0 + Duration::from_secs(3600)));
        assert!(!g.consume(":1.1", 0, t0));
        assert_eq!(g.len(), 0);
    }

    #[test]
    fn window() {
        let t0 = Instant::now();
        let mut g = Grants::default();
        g.grant(":1.1", 1000, Kind::Until(t0 + Duration::from_secs(60)));
        for s in [0, 1, 30, 59] {
            assert!(g.consume(":1.1", 1000, t0 + Duration::from_secs(s)), "{s}");
        }
        assert!(!g.consume(":1.1", 1000, t0 + Duration::from_secs(60)));
        // The expired grant is gone, even if the clock went backwards.
        assert!(!g.consume(":1.1", 1000, t0));
    }

    #[test]
    fn bound_to_the_connection_and_uid() {
        let t0 = Instant::now();
        let mut g = Grants::default();
        g.grant(":1.1", 1000, Kind::Until(t0 + Duration::from_secs(60)));
        // Another connection of the same uid is not elevated.
        assert!(!g.consume(":1.2", 1000, t0));
        // A different uid on that name (cannot happen on a bus) is refused
        // and the grant dropped.
        assert!(!g.consume(":1.1", 1001, t0));
        assert!(!g.consume(":1.1", 1000, t0));

        g.grant(":1.3", 1000, Kind::OneCall);
        assert!(g.forget(":1.3"));
        assert!(!g.forget(":1.3"));
        assert!(!g.consume(":1.3", 1000, t0));
    }

    #[test]
    fn regrant_replaces_and_prune() {
        let t0 = Instant::now();
        let mut g = Grants::default();
        g.grant(":1.1", 0, Kind::Until(t0 + Duration::from_secs(1)));
        g.grant(":1.1", 0, Kind::OneCall);
        assert!(g.consume(":1.1", 0, t0 + Duration::from_secs(5)));
        assert!(!g.consume(":1.1", 0, t0));
        g.grant(":1.2", 0, Kind::Until(t0 + Duration::from_secs(1)));
        g.grant(":1.3", 0, Kind::OneCall);
        g.prune(t0 + Duration::from_secs(2));
        assert_eq!(g.len(), 1);
        assert!(g.consume(":1.3", 0, t0));
    }
}
