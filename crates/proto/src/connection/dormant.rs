//! A connection at rest: what an open connection with nothing in flight keeps between two
//! bursts of traffic, so that a runtime holding many idle connections can give the rest of
//! the state machine back (and lend it again on the next byte).
//!
//! An idle connection's state is mostly empty buffers and fields at their starting values;
//! what is left is its settings, the client's mask source and the permessage-deflate state
//! (whose sliding windows must survive between messages). Everything else is rebuilt by
//! [`Connection::wake`] exactly as [`Connection::new`] builds it.
//!
//! A connection whose closing handshake is over (a close frame each way, ours written)
//! sleeps too, keeping only that: a server waits for the client's end of the TCP connection
//! after it, and when many clients leave at once, each of them holding its whole state
//! machine until then was most of the server's memory at that moment.

use super::ReadyState;
use super::{Connection, MaskSource};
use crate::config::Config;
use crate::role::Role;

/// An open connection with nothing in flight, in the few bytes it keeps between bursts.
///
/// Made by [`Connection::sleep`]; [`Connection::wake`] turns it back into the connection it
/// was. A hook for runtimes that hold many idle connections, hidden from the documentation.
#[doc(hidden)]
#[derive(Debug)]
pub struct Dormant {
    config: Config,
    masks: MaskSource,
    #[cfg(feature = "deflate")]
    deflate: Option<Box<crate::deflate::DeflateState>>,
    role: Role,
    /// The closing handshake is over: a close frame went each way.
    closed: bool,
}

impl Dormant {
    /// This side's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The state of the connection it was: open, or closed once its closing handshake is
    /// over.
    pub fn ready_state(&self) -> ReadyState {
        if self.closed {
            ReadyState::Closed
        } else {
            ReadyState::Open
        }
    }
}

impl Connection {
    /// Whether the connection is open with nothing in flight: nothing received but not
    /// handed out, no frame or message half-arrived, nothing queued to send, no close frame
    /// either way. Only then can it [`sleep`](Self::sleep).
    #[doc(hidden)]
    pub fn is_at_rest(&self) -> bool {
        self.recv.is_empty()
            && self.frame.is_none()
            && self.reassembly.is_none()
            && self.decoder.current_header().is_none()
            && self.send.len() == 0
            && self.pending_pong.is_none()
            && !self.close_sent
            && !self.close_received
            && !self.failed
    }

    /// Whether the closing handshake is over and nothing is left to send: a close frame
    /// went each way, and ours is written. Such a connection can [`sleep`](Self::sleep)
    /// too (what it still receives is discarded).
    #[doc(hidden)]
    pub fn is_closed_and_flushed(&self) -> bool {
        self.close_sent && self.close_received && !self.failed && self.send.len() == 0
    }

    /// Puts a connection [at rest](Self::is_at_rest), or [closed and
    /// flushed](Self::is_closed_and_flushed), to sleep: returns what it keeps, and leaves
    /// `self` a connection with nothing of its own, to be dropped or overwritten by
    /// [`wake`](Self::wake). `None` (and `self` untouched) otherwise.
    #[doc(hidden)]
    pub fn sleep(&mut self) -> Option<Dormant> {
        let closed = self.is_closed_and_flushed();
        if !closed && !self.is_at_rest() {
            return None;
        }
        // `lent` bytes are part of `recv`, which is empty: nothing is lent.
        self.lent = 0;
        Some(Dormant {
            config: self.config.clone(),
            masks: std::mem::replace(&mut self.masks, MaskSource::Thread),
            // A closed connection compresses and inflates nothing more.
            #[cfg(feature = "deflate")]
            deflate: self.deflate.take().filter(|_| !closed),
            role: self.role,
            closed,
        })
    }

    /// The connection `dormant` was put to sleep from, as it was.
    #[doc(hidden)]
    pub fn wake(dormant: Dormant) -> Self {
        let Dormant {
            config,
            masks,
            #[cfg(feature = "deflate")]
            deflate,
            role,
            closed,
        } = dormant;
        let mut conn = Self::assemble(
            role,
            config,
            bytes::BytesMut::new(),
            #[cfg(feature = "deflate")]
            deflate,
        );
        conn.masks = masks;
        conn.close_sent = closed;
        conn.close_received = closed;
        conn
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{Event, Message};

    fn events(conn: &mut Connection) -> Vec<Event> {
        let mut out = Vec::new();
        while let Some(event) = conn.poll_event().expect("no protocol error") {
            out.push(event);
        }
        out
    }

    fn pump(from: &mut Connection, to: &mut Connection) {
        while let Some(chunk) = from.poll_transmit() {
            to.receive(&chunk);
        }
    }

    fn nap(conn: Connection) -> Connection {
        let mut conn = conn;
        let dormant = conn.sleep().expect("at rest");
        Connection::wake(dormant)
    }

    #[test]
    fn a_connection_whose_closing_handshake_is_over_sleeps_closed() {
        let mut client = Connection::new(Role::Client, Config::default());
        let mut server = Connection::new(Role::Server, Config::default());
        client.close(crate::CloseCode::NORMAL, "bye").unwrap();
        pump(&mut client, &mut server);
        events(&mut server);
        assert_eq!(
            server.ready_state(),
            ReadyState::Closed,
            "its answer is queued"
        );
        assert!(
            server.sleep().is_none(),
            "its answer is still to be written"
        );
        assert!(server.wants_transmit());
        pump(&mut server, &mut client);
        assert!(server.is_closed_and_flushed());

        let dormant = server.sleep().expect("closed and flushed");
        assert_eq!(dormant.ready_state(), ReadyState::Closed);
        let mut server = Connection::wake(dormant);
        assert_eq!(server.ready_state(), ReadyState::Closed);
        assert!(server.is_receive_done(), "what still arrives is discarded");
        assert!(server.send_text("late").is_err(), "nothing more is sent");

        // Closing one way only: no sleep.
        let mut server = Connection::new(Role::Server, Config::default());
        server.close(crate::CloseCode::NORMAL, "").unwrap();
        while server.poll_transmit().is_some() {}
        assert!(!server.is_closed_and_flushed());
        assert!(server.sleep().is_none());
    }

    #[test]
    fn only_a_connection_with_nothing_in_flight_sleeps() {
        let mut client = Connection::new(Role::Client, Config::default());
        let mut server = Connection::new(Role::Server, Config::default());
        assert!(server.is_at_rest());

        // Half a frame received.
        client.send_text("hello").unwrap();
        let frame = client.poll_transmit().unwrap();
        server.receive(&frame[..3]);
        assert!(events(&mut server).is_empty());
        assert!(server.sleep().is_none(), "a frame's start is in the buffer");
        server.receive(&frame[3..]);
        assert_eq!(
            events(&mut server),
            [Event::Message(Message::text("hello"))]
        );
        assert!(server.is_at_rest());

        // The first fragment of a message (a masked frame of 3 bytes: 2 + 4 + 3).
        client.send_fragmented("hello", 3).unwrap();
        let mut frames = Vec::new();
        while let Some(chunk) = client.poll_transmit() {
            frames.extend_from_slice(&chunk);
        }
        server.receive(&frames[..9]);
        assert!(events(&mut server).is_empty());
        assert!(!server.is_at_rest(), "a message is half-way");
        server.receive(&frames[9..]);
        assert_eq!(
            events(&mut server),
            [Event::Message(Message::text("hello"))]
        );

        // Something to send.
        server.send_text("hi").unwrap();
        assert!(server.sleep().is_none(), "a reply is queued");
        pump(&mut server, &mut client);
        assert!(server.is_at_rest());

        // Closing.
        server.close(crate::CloseCode::NORMAL, "").unwrap();
        let _ = server.poll_transmit();
        assert!(!server.is_at_rest(), "a close frame went out");
    }

    #[test]
    fn a_woken_connection_keeps_its_limits() {
        let config = Config::default().max_message_size(10);
        let mut client = Connection::new(Role::Client, Config::default());
        let mut server = nap(Connection::new(Role::Server, config));
        client.send_text("0123456789abc").unwrap();
        pump(&mut client, &mut server);
        let error = server.poll_event().unwrap_err();
        assert_eq!(error.close_code(), Some(crate::CloseCode::MESSAGE_TOO_BIG));
    }

    #[test]
    fn a_seeded_client_goes_on_with_the_same_keys() {
        let mut slept = Connection::new(Role::Client, Config::default());
        let mut awake = Connection::new(Role::Client, Config::default());
        slept.set_mask_seed_insecure_for_tests(7);
        awake.set_mask_seed_insecure_for_tests(7);
        for text in ["one", "two", "three"] {
            slept = nap(slept);
            slept.send_text(text).unwrap();
            awake.send_text(text).unwrap();
            assert_eq!(slept.poll_transmit(), awake.poll_transmit());
        }
    }
}
