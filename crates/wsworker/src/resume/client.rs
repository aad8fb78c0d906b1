//! The client's side of `wsworker.resume.v1` (`docs/RESUME.md`), without I/O: the session's
//! token and the last position of each topic, the opening frame of each connection, and
//! what to make of each frame from the server — deliver its payload, drop it as a
//! duplicate, or report the session. The crate's client ([`WebSocketBuilder::resume`])
//! feeds it and acts on the answers; a client of its own can too.
//!
//! [`WebSocketBuilder::resume`]: crate::WebSocketBuilder::resume

use std::time::Duration;

use super::FailReason;
use super::wire::{
    Opening, Positions, ServerFrame, SessionInfo, WireError, encode_opening, parse_server_frame,
};
use crate::hub::Stamp;

/// One session across the connections of a client: `Default` is a new one (its first
/// opening is `start`).
#[derive(Debug, Clone, Default)]
pub struct ClientSession {
    /// The token of the last `hello` or `resumed`: the next connection resumes with it.
    token: Option<String>,
    /// The last position of each topic the connection is in.
    positions: Positions,
    /// This connection has had the server's answer (`hello` or `resumed`).
    answered: bool,
}

/// What a frame from the server comes to ([`ClientSession::on_frame`]).
#[derive(Debug, PartialEq, Eq)]
pub enum ClientStep {
    /// A message for the application: the frame's payload, from this byte on (after the
    /// head).
    Deliver(usize),
    /// Nothing for the application: a duplicate, `joined` or `left`.
    Skip,
    /// The answer to `start` (or to a `resume` the server turned into a new session).
    Session {
        /// The session's public id.
        id: String,
        /// How long after a loss it can be resumed.
        window: Duration,
    },
    /// The answer to `resume`; the replay follows.
    Resumed {
        /// The session's public id.
        id: String,
        /// The topics being replayed.
        recovered: Vec<String>,
        /// The topics that could not be, and why.
        failed: Vec<(String, FailReason)>,
    },
}

fn error(what: &str) -> WireError {
    WireError(what.to_owned())
}

impl ClientSession {
    /// A session kept from before (its token and the positions of its topics): the next
    /// opening resumes it.
    pub fn restore(token: String, positions: Positions) -> Self {
        Self {
            token: Some(token),
            positions,
            answered: false,
        }
    }

    /// The first frame of a new connection: `start` for the first, `resume` with the
    /// latest token and positions after that. The connection then waits for the answer.
    pub fn opening(&mut self) -> String {
        self.answered = false;
        let opening = match &self.token {
            None => Opening::Start,
            Some(token) => Opening::Resume {
                token: token.clone(),
                positions: self.positions.clone(),
            },
        };
        encode_opening(&opening)
    }

    /// Whether the server has answered the opening on this connection: until it has, the
    /// application's messages wait.
    #[cfg(test)]
    fn answered(&self) -> bool {
        self.answered
    }

    /// The token the next connection resumes with.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// The last position of every topic the connection is in.
    pub fn positions(&self) -> &Positions {
        &self.positions
    }

    /// The last position of `topic`.
    pub fn position(&self, topic: &str) -> Option<Stamp> {
        self.positions.get(topic).copied()
    }

    /// Takes a frame from the server.
    ///
    /// # Errors
    /// [`WireError`] for a frame that is not one of the protocol's, or that comes before
    /// the answer to the opening (anything but `hello` or `resumed` first): the
    /// connection is to be closed with 1002.
    pub fn on_frame(&mut self, frame: &[u8]) -> Result<ClientStep, WireError> {
        let parsed = parse_server_frame(frame)?;
        if !self.answered
            && !matches!(
                parsed,
                ServerFrame::Hello { .. } | ServerFrame::Resumed { .. }
            )
        {
            return Err(error("a frame before the answer to start or resume"));
        }
        Ok(match parsed {
            ServerFrame::Hello { session, positions } => {
                self.answered = true;
                self.positions = positions;
                let (id, window) = self.take_session(session);
                ClientStep::Session { id, window }
            }
            ServerFrame::Resumed {
                session,
                recovered,
                failed,
                positions,
            } => {
                self.answered = true;
                // Recovered topics go on from the client's positions (their replay
                // follows); every other topic from the server's; a topic that is neither
                // is no longer the connection's.
                let mut kept: Positions = recovered
                    .iter()
                    .filter_map(|topic| Some((topic.clone(), *self.positions.get(topic)?)))
                    .collect();
                kept.extend(positions);
                self.positions = kept;
                let (id, _) = self.take_session(session);
                ClientStep::Resumed {
                    id,
                    recovered,
                    failed,
                }
            }
            ServerFrame::Joined { topic, position } => {
                let later = self.positions.get(&topic).is_some_and(|current| {
                    current.epoch == position.epoch && current.offset > position.offset
                });
                if !later {
                    self.positions.insert(topic, position);
                }
                ClientStep::Skip
            }
            ServerFrame::Left { topic } => {
                self.positions.remove(&topic);
                ClientStep::Skip
            }
            ServerFrame::Message {
                topic,
                offset,
                id,
                epoch,
                payload,
            } => {
                let from = frame.len() - payload.len();
                let current = self.positions.get(&topic);
                let Some(epoch) = epoch.or(current.map(|c| c.epoch)) else {
                    // A topic the client never heard of, without its epoch: nothing to
                    // place it against. Delivered, untracked.
                    tracing::debug!(
                        topic,
                        offset,
                        "resume: a message of an unknown topic without its epoch"
                    );
                    return Ok(ClientStep::Deliver(from));
                };
                if current.is_some_and(|c| c.epoch == epoch && offset <= c.offset) {
                    tracing::trace!(topic, offset, "resume: a duplicate dropped");
                    return Ok(ClientStep::Skip);
                }
                self.positions.insert(topic, Stamp { epoch, offset, id });
                ClientStep::Deliver(from)
            }
            ServerFrame::Plain(payload) => ClientStep::Deliver(frame.len() - payload.len()),
        })
    }

    /// Keeps the session's token for the next resume; its id and window for the report.
    fn take_session(&mut self, session: SessionInfo) -> (String, Duration) {
        self.token = Some(session.token);
        (session.session, Duration::from_secs(session.window))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resume::wire::{
        encode_hello, encode_joined, encode_left, encode_resumed, message_head, parse_opening,
    };

    fn stamp(epoch: u64, offset: u64, id: u64) -> Stamp {
        Stamp { epoch, offset, id }
    }

    fn session(token: &str) -> SessionInfo {
        SessionInfo {
            session: "s1".into(),
            token: token.into(),
            window: 120,
        }
    }

    fn positions(entries: &[(&str, Stamp)]) -> Positions {
        entries.iter().map(|(t, s)| ((*t).to_owned(), *s)).collect()
    }

    /// An `m` frame.
    fn m(topic: &str, stamp: Stamp, with_epoch: bool, payload: &str) -> Vec<u8> {
        let mut frame = message_head(topic, &stamp, with_epoch).into_bytes();
        frame.extend_from_slice(payload.as_bytes());
        frame
    }

    /// Feeds `frame` and returns the payload delivered, if any.
    fn delivered(state: &mut ClientSession, frame: &[u8]) -> Option<String> {
        match state.on_frame(frame).unwrap() {
            ClientStep::Deliver(from) => Some(String::from_utf8(frame[from..].to_vec()).unwrap()),
            ClientStep::Skip => None,
            other => panic!("{other:?}"),
        }
    }

    /// A state with a session: `start`, then `hello` with these positions.
    fn started(entries: &[(&str, Stamp)]) -> ClientSession {
        let mut state = ClientSession::default();
        assert_eq!(state.opening(), "start\n");
        let hello = encode_hello(&session("t1"), &positions(entries));
        assert_eq!(
            state.on_frame(hello.as_bytes()).unwrap(),
            ClientStep::Session {
                id: "s1".into(),
                window: Duration::from_secs(120)
            }
        );
        state
    }

    #[test]
    fn the_first_connection_starts_and_the_next_resume_with_token_and_positions() {
        let mut state = started(&[("all", stamp(7, 3, 0xa))]);
        assert!(state.answered());
        assert_eq!(state.token(), Some("t1"));
        assert_eq!(
            delivered(&mut state, &m("all", stamp(7, 4, 0xb), false, "x")),
            Some("x".into())
        );
        let opening = state.opening();
        assert!(!state.answered(), "a new connection waits for its answer");
        assert_eq!(
            parse_opening(opening.as_bytes()).unwrap(),
            Opening::Resume {
                token: "t1".into(),
                positions: positions(&[("all", stamp(7, 4, 0xb))]),
            }
        );
    }

    #[test]
    fn messages_are_delivered_without_their_head_and_duplicates_dropped() {
        let mut state = started(&[("g:room", stamp(9, 10, 1))]);
        // At or before the position of `hello`: already seen.
        assert_eq!(
            delivered(&mut state, &m("g:room", stamp(9, 10, 1), false, "old")),
            None
        );
        assert_eq!(
            delivered(&mut state, &m("g:room", stamp(9, 2, 1), false, "older")),
            None
        );
        assert_eq!(
            delivered(
                &mut state,
                &m("g:room", stamp(9, 11, 2), false, "a\nmultiline payload")
            ),
            Some("a\nmultiline payload".into())
        );
        assert_eq!(
            delivered(&mut state, &m("g:room", stamp(9, 11, 2), false, "again")),
            None
        );
        assert_eq!(
            delivered(&mut state, &m("g:room", stamp(9, 12, 3), true, "")),
            Some(String::new())
        );
        assert_eq!(state.position("g:room"), Some(stamp(9, 12, 3)));
        assert_eq!(
            delivered(&mut state, b"v\nvolatile"),
            Some("volatile".into())
        );
        assert_eq!(delivered(&mut state, b"v\n"), Some(String::new()));
    }

    #[test]
    fn duplicates_at_the_seam_of_a_resume_are_dropped() {
        let mut state = started(&[("u:tom", stamp(5, 0, 0)), ("all", stamp(5, 20, 0xaa))]);
        for offset in 1..=3 {
            delivered(
                &mut state,
                &m("u:tom", stamp(5, offset, offset), false, "live"),
            )
            .unwrap();
        }
        // The connection is lost; the next one resumes from offset 3.
        let opening = state.opening();
        assert!(
            opening.contains(r#""u:tom":["5",3,"0000000000000003"]"#),
            "{opening}"
        );
        let resumed = encode_resumed(
            &session("t2"),
            &["u:tom".to_owned()],
            &[],
            &positions(&[("all", stamp(5, 25, 0xbb))]),
        );
        assert_eq!(
            state.on_frame(resumed.as_bytes()).unwrap(),
            ClientStep::Resumed {
                id: "s1".into(),
                recovered: vec!["u:tom".into()],
                failed: vec![]
            }
        );
        assert_eq!(state.token(), Some("t2"), "a token resumes once");
        // The replay, then live messages the server had also buffered: 4 and 5 once each.
        let mut got = Vec::new();
        for offset in [2, 3, 4, 5, 3, 4, 5, 6] {
            if let Some(p) = delivered(
                &mut state,
                &m(
                    "u:tom",
                    stamp(5, offset, offset),
                    false,
                    &offset.to_string(),
                ),
            ) {
                got.push(p);
            }
        }
        assert_eq!(got, ["4", "5", "6"]);
        assert_eq!(state.position("all"), Some(stamp(5, 25, 0xbb)));
        assert_eq!(
            delivered(&mut state, &m("all", stamp(5, 25, 0xbb), false, "seen")),
            None
        );
    }

    #[test]
    fn failed_topics_go_on_from_the_servers_position_and_others_are_forgotten() {
        let mut state = started(&[
            ("g:a", stamp(1, 50, 1)),
            ("g:b", stamp(1, 60, 2)),
            ("g:gone", stamp(1, 70, 3)),
        ]);
        state.opening();
        let resumed = encode_resumed(
            &session("t2"),
            &["g:a".to_owned()],
            &[("g:b".to_owned(), FailReason::Epoch)],
            &positions(&[("g:b", stamp(2, 4, 9)), ("u:new", stamp(3, 1, 1))]),
        );
        let ClientStep::Resumed { failed, .. } = state.on_frame(resumed.as_bytes()).unwrap() else {
            panic!("not resumed");
        };
        assert_eq!(failed, [("g:b".to_owned(), FailReason::Epoch)]);
        assert_eq!(state.position("g:a"), Some(stamp(1, 50, 1)));
        assert_eq!(state.position("g:b"), Some(stamp(2, 4, 9)));
        assert_eq!(state.position("u:new"), Some(stamp(3, 1, 1)));
        assert_eq!(state.position("g:gone"), None);
        // g:b's new epoch, from its new position: 4 is old, 5 new.
        assert_eq!(
            delivered(&mut state, &m("g:b", stamp(2, 4, 9), false, "x")),
            None
        );
        assert_eq!(
            delivered(&mut state, &m("g:b", stamp(2, 5, 9), false, "y")),
            Some("y".into())
        );
    }

    #[test]
    fn a_new_epoch_in_a_head_starts_the_topic_over() {
        let mut state = started(&[("all", stamp(100, 500, 1))]);
        // Redis lost the topic's history: offsets start again from 1 in epoch 101.
        assert_eq!(
            delivered(&mut state, &m("all", stamp(101, 1, 7), true, "fresh")),
            Some("fresh".into())
        );
        assert_eq!(state.position("all"), Some(stamp(101, 1, 7)));
        // Without an epoch in the head: the one last heard (101).
        assert_eq!(
            delivered(&mut state, &m("all", stamp(101, 1, 7), false, "dup")),
            None
        );
        assert_eq!(
            delivered(&mut state, &m("all", stamp(101, 2, 8), false, "next")),
            Some("next".into())
        );
        // An old epoch's message is another epoch's too: it is delivered and placed.
        assert_eq!(
            delivered(&mut state, &m("all", stamp(100, 501, 2), true, "late")),
            Some("late".into())
        );
        assert_eq!(state.position("all"), Some(stamp(100, 501, 2)));
    }

    #[test]
    fn joined_sets_a_position_unless_a_later_one_is_known_and_left_forgets() {
        let mut state = started(&[]);
        assert_eq!(
            state.on_frame(encode_joined("g:x", &stamp(4, 10, 1)).as_bytes()),
            Ok(ClientStep::Skip)
        );
        assert_eq!(state.position("g:x"), Some(stamp(4, 10, 1)));
        assert_eq!(
            delivered(&mut state, &m("g:x", stamp(4, 10, 1), false, "before")),
            None
        );
        assert_eq!(
            delivered(&mut state, &m("g:x", stamp(4, 12, 3), false, "after")),
            Some("after".into())
        );
        // A join reported after messages that came later (a bind racing the join).
        state
            .on_frame(encode_joined("g:x", &stamp(4, 11, 2)).as_bytes())
            .unwrap();
        assert_eq!(state.position("g:x"), Some(stamp(4, 12, 3)));
        // Another epoch replaces the position whatever its offset.
        state
            .on_frame(encode_joined("g:x", &stamp(5, 1, 4)).as_bytes())
            .unwrap();
        assert_eq!(state.position("g:x"), Some(stamp(5, 1, 4)));
        assert_eq!(
            state.on_frame(encode_left("g:x").as_bytes()),
            Ok(ClientStep::Skip)
        );
        assert_eq!(state.position("g:x"), None);
        let opening = state.opening();
        assert!(opening.contains(r#""positions":{}"#), "{opening}");
        // Messages of a topic never heard of: placed when they bring their epoch.
        state
            .on_frame(encode_resumed(&session("t3"), &[], &[], &Positions::new()).as_bytes())
            .unwrap();
        assert_eq!(
            delivered(&mut state, &m("g:y", stamp(8, 3, 3), false, "untracked")),
            Some("untracked".into())
        );
        assert_eq!(state.position("g:y"), None);
        assert_eq!(
            delivered(&mut state, &m("g:y", stamp(8, 3, 3), true, "placed")),
            Some("placed".into())
        );
        assert_eq!(state.position("g:y"), Some(stamp(8, 3, 3)));
    }

    #[test]
    fn malformed_or_early_frames_are_errors() {
        let mut state = ClientSession::default();
        state.opening();
        assert!(state.on_frame(b"v\nbefore the answer").is_err());
        assert!(
            state
                .on_frame(&m("all", stamp(1, 1, 1), true, "early"))
                .is_err()
        );
        assert!(
            state
                .on_frame(encode_joined("g:a", &stamp(1, 1, 1)).as_bytes())
                .is_err()
        );
        assert!(!state.answered());
        let mut state = started(&[]);
        for bad in [
            &b"no head at all"[..],
            b"x\nunknown head",
            b"m all 1\n",
            b"m all 1 0000000000000001 epoch\n",
            b"hello\n{not json",
            b"resumed\n{}",
            b"joined\n{\"topic\":\"g:a\",\"position\":[\"1\",1,\"short\"]}",
            b"\xff\xfe\n",
        ] {
            assert!(state.on_frame(bad).is_err(), "{bad:?}");
        }
        // The errors changed nothing.
        assert!(state.answered());
        assert_eq!(state.token(), Some("t1"));
    }

    #[test]
    fn a_hello_answering_a_resume_starts_afresh() {
        let mut state = started(&[("all", stamp(1, 5, 5))]);
        state.opening();
        let hello = encode_hello(&session("t9"), &positions(&[("g:z", stamp(2, 0, 0))]));
        assert!(matches!(
            state.on_frame(hello.as_bytes()),
            Ok(ClientStep::Session { .. })
        ));
        assert_eq!(state.position("all"), None);
        assert_eq!(state.position("g:z"), Some(stamp(2, 0, 0)));
        assert_eq!(state.token(), Some("t9"));
    }
}
