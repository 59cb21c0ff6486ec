//! Collecting signals in the background, to wait for them with a deadline.

use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use bmcd_api::zbus;
use zbus::blocking::{Connection, MessageIterator};
use zbus::message::Message;
use zbus::MatchRule;

/// Messages matching a rule, received by a thread into a queue. The match
/// is in place when [`Signals::subscribe`] returns.
pub struct Signals {
    rx: Receiver<Message>,
    /// Everything received so far (looked at by earlier waits too).
    seen: Vec<Message>,
}

impl Signals {
    pub fn subscribe(conn: &Connection, rule: MatchRule<'static>) -> Signals {
        let it = MessageIterator::for_match_rule(rule, conn, Some(1024))
            .unwrap_or_else(|e| panic!("AddMatch failed: {e}"));
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for m in it.flatten() {
                if tx.send(m).is_err() {
                    break;
                }
            }
        });
        Signals {
            rx,
            seen: Vec::new(),
        }
    }

    /// Signals of `interface` (any member if `member` is None) sent by
    /// `org.bmcd`, at `path` if given.
    pub fn from_bmcd(
        conn: &Connection,
        path: Option<&'static str>,
        interface: &'static str,
        member: Option<&'static str>,
    ) -> Signals {
        let mut b = MatchRule::builder()
            .msg_type(zbus::message::Type::Signal)
            .sender(bmcd_api::BUS_NAME)
            .and_then(|b| b.interface(interface))
            .expect("match rule");
        if let Some(p) = path {
            b = b.path(p).expect("match path");
        }
        if let Some(m) = member {
            b = b.member(m).expect("match member");
        }
        Signals::subscribe(conn, b.build())
    }

    /// Wait for a message accepted by `pred` (messages received earlier
    /// count too); panic naming `what` on timeout.
    pub fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        mut pred: impl FnMut(&Message) -> bool,
    ) -> Message {
        if let Some(m) = self.seen.iter().find(|m| pred(m)) {
            return m.clone();
        }
        let start = Instant::now();
        loop {
            let left = timeout.saturating_sub(start.elapsed());
            match self.rx.recv_timeout(left) {
                Ok(m) => {
                    self.seen.push(m.clone());
                    if pred(&m) {
                        return m;
                    }
                }
                Err(RecvTimeoutError::Timeout) => panic!(
                    "timed out after {timeout:?} waiting for signal: {what} ({} other messages \
                     received)",
                    self.seen.len()
                ),
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("connection closed while waiting for signal: {what}")
                }
            }
        }
    }

    /// Everything received so far.
    pub fn received(&mut self) -> &[Message] {
        while let Ok(m) = self.rx.try_recv() {
            self.seen.push(m);
        }
        &self.seen
    }
}
