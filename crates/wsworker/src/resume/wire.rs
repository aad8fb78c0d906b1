//! The frames of `wsworker.resume.v1` (`docs/RESUME.md`), both ways: pure functions from
//! bytes to values and back, shared by the server and the client.
//!
//! Every frame is `HEAD "\n" BODY`; HEAD is ASCII words separated by one space. Control
//! frames carry JSON bodies; message frames carry the application's payload.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::FailReason;
use crate::hub::engine::Stamp;

/// A frame this module could not read: what was wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a wsworker.resume.v1 frame: {0}")]
pub struct WireError(pub(crate) String);

fn error(what: impl Into<String>) -> WireError {
    WireError(what.into())
}

/// Positions by topic key (`all`, `u:USER`, `g:GROUP`).
pub type Positions = BTreeMap<String, Stamp>;

/// The client's first frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opening {
    /// A new session.
    Start,
    /// Resume the session `token` names, from these positions.
    Resume {
        /// The secret token of the session's last `hello` or `resumed`.
        token: String,
        /// The last position the client has of each topic.
        positions: Positions,
    },
}

/// The session a `hello` or `resumed` tells the client of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// The session's public id.
    pub session: String,
    /// Its secret resume token (good for one resume).
    pub token: String,
    /// How long after a loss it can be resumed, in seconds.
    pub window: u64,
}

/// A frame from the server, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerFrame<'a> {
    /// The answer to `start`: the session and the position of every topic it is in.
    Hello {
        /// The session.
        session: SessionInfo,
        /// The current position of each topic.
        positions: Positions,
    },
    /// The answer to `resume`; the replay follows.
    Resumed {
        /// The session (a new token).
        session: SessionInfo,
        /// The topics that will be replayed.
        recovered: Vec<String>,
        /// The topics that could not be, and why.
        failed: Vec<(String, FailReason)>,
        /// The position to go on from of every topic not recovered.
        positions: Positions,
    },
    /// The connection joined a topic; its messages after `position` follow.
    Joined {
        /// The topic's key.
        topic: String,
        /// Its position at the join.
        position: Stamp,
    },
    /// The connection left a topic.
    Left {
        /// The topic's key.
        topic: String,
    },
    /// A message with a place in its topic.
    Message {
        /// The topic's key.
        topic: String,
        /// The message's offset.
        offset: u64,
        /// The message's id.
        id: u64,
        /// The topic's epoch, when it changed.
        epoch: Option<u64>,
        /// The application's payload.
        payload: &'a [u8],
    },
    /// A message with no place (volatile, to this connection, or sent to it directly).
    Plain(&'a [u8]),
}

/// A position on the wire: `["EPOCH", OFFSET, "ID"]`.
#[derive(Serialize, Deserialize)]
struct WirePosition(String, u64, String);

impl From<&Stamp> for WirePosition {
    fn from(stamp: &Stamp) -> Self {
        Self(
            stamp.epoch.to_string(),
            stamp.offset,
            format!("{:016x}", stamp.id),
        )
    }
}

impl TryFrom<WirePosition> for Stamp {
    type Error = WireError;

    fn try_from(WirePosition(epoch, offset, id): WirePosition) -> Result<Self, WireError> {
        Ok(Self {
            epoch: epoch
                .parse()
                .map_err(|_| error("an epoch is not a number"))?,
            offset,
            id: parse_id(&id)?,
        })
    }
}

fn parse_id(id: &str) -> Result<u64, WireError> {
    if id.len() != 16 {
        return Err(error("a message id is not 16 hex digits"));
    }
    u64::from_str_radix(id, 16).map_err(|_| error("a message id is not 16 hex digits"))
}

fn wire_positions(positions: &Positions) -> BTreeMap<&str, WirePosition> {
    positions
        .iter()
        .map(|(topic, stamp)| (topic.as_str(), stamp.into()))
        .collect()
}

fn read_positions(positions: BTreeMap<String, WirePosition>) -> Result<Positions, WireError> {
    positions
        .into_iter()
        .map(|(topic, position)| Ok((topic, position.try_into()?)))
        .collect()
}

#[derive(Serialize, Deserialize)]
struct ResumeBody {
    token: String,
    #[serde(default)]
    positions: BTreeMap<String, WirePosition>,
}

#[derive(Serialize, Deserialize)]
struct HelloBody {
    #[serde(flatten)]
    session: SessionInfo,
    #[serde(default)]
    positions: BTreeMap<String, WirePosition>,
}

#[derive(Serialize, Deserialize)]
struct ResumedBody {
    #[serde(flatten)]
    session: SessionInfo,
    #[serde(default)]
    recovered: Vec<String>,
    #[serde(default)]
    failed: Vec<(String, FailReason)>,
    #[serde(default)]
    positions: BTreeMap<String, WirePosition>,
}

#[derive(Serialize, Deserialize)]
struct JoinedBody {
    topic: String,
    position: WirePosition,
}

#[derive(Serialize, Deserialize)]
struct LeftBody {
    topic: String,
}

fn json<T: Serialize>(head: &str, body: &T) -> String {
    let mut out = String::with_capacity(128);
    out.push_str(head);
    out.push('\n');
    // Serializing these plain structs (strings, numbers, maps with string keys) cannot
    // fail.
    out.push_str(&serde_json::to_string(body).unwrap_or_default());
    out
}

/// The client's first frame.
pub fn encode_opening(opening: &Opening) -> String {
    match opening {
        Opening::Start => "start\n".to_owned(),
        Opening::Resume { token, positions } => json(
            "resume",
            &ResumeBody {
                token: token.clone(),
                positions: wire_positions(positions)
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v))
                    .collect(),
            },
        ),
    }
}

/// Reads the client's first frame.
///
/// # Errors
/// [`WireError`] when it is neither `start` nor a well-formed `resume`.
pub fn parse_opening(frame: &[u8]) -> Result<Opening, WireError> {
    let (head, body) = split(frame)?;
    match head {
        "start" => Ok(Opening::Start),
        "resume" => {
            let body: ResumeBody =
                serde_json::from_slice(body).map_err(|e| error(format!("resume: {e}")))?;
            Ok(Opening::Resume {
                token: body.token,
                positions: read_positions(body.positions)?,
            })
        }
        _ => Err(error("the first frame is neither start nor resume")),
    }
}

/// The `hello` frame.
pub fn encode_hello(session: &SessionInfo, positions: &Positions) -> String {
    json(
        "hello",
        &HelloBody {
            session: session.clone(),
            positions: owned(wire_positions(positions)),
        },
    )
}

/// The `resumed` frame.
pub fn encode_resumed(
    session: &SessionInfo,
    recovered: &[String],
    failed: &[(String, FailReason)],
    positions: &Positions,
) -> String {
    json(
        "resumed",
        &ResumedBody {
            session: session.clone(),
            recovered: recovered.to_vec(),
            failed: failed.to_vec(),
            positions: owned(wire_positions(positions)),
        },
    )
}

/// The `joined` frame.
pub fn encode_joined(topic: &str, position: &Stamp) -> String {
    json(
        "joined",
        &JoinedBody {
            topic: topic.to_owned(),
            position: position.into(),
        },
    )
}

/// The `left` frame.
pub fn encode_left(topic: &str) -> String {
    json(
        "left",
        &LeftBody {
            topic: topic.to_owned(),
        },
    )
}

fn owned(map: BTreeMap<&str, WirePosition>) -> BTreeMap<String, WirePosition> {
    map.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// The head of a message with a place: `m TOPIC OFFSET ID[ EPOCH]\n`.
pub fn message_head(topic: &str, stamp: &Stamp, with_epoch: bool) -> String {
    let mut head = String::with_capacity(topic.len() + 48);
    head.push_str("m ");
    escape_into(topic, &mut head);
    let _ = write!(head, " {} {:016x}", stamp.offset, stamp.id);
    if with_epoch {
        let _ = write!(head, " {}", stamp.epoch);
    }
    head.push('\n');
    head
}

/// The head of a message with no place.
pub const PLAIN_HEAD: &str = "v\n";

/// Reads a frame from the server.
///
/// # Errors
/// [`WireError`] when its head is not one of the protocol's, or its body not as the head
/// says.
pub fn parse_server_frame(frame: &[u8]) -> Result<ServerFrame<'_>, WireError> {
    let (head, body) = split(frame)?;
    let mut words = head.split(' ');
    let kind = words.next().unwrap_or_default();
    let parsed = match kind {
        "v" => ServerFrame::Plain(body),
        "m" => {
            let topic = unescape(words.next().ok_or_else(|| error("m: no topic"))?)?;
            let offset = words
                .next()
                .and_then(|w| w.parse().ok())
                .ok_or_else(|| error("m: no offset"))?;
            let id = parse_id(words.next().ok_or_else(|| error("m: no id"))?)?;
            let epoch = match words.next() {
                Some(word) => Some(word.parse().map_err(|_| error("m: bad epoch"))?),
                None => None,
            };
            ServerFrame::Message {
                topic,
                offset,
                id,
                epoch,
                payload: body,
            }
        }
        "hello" => {
            let body: HelloBody = from_json(body)?;
            ServerFrame::Hello {
                session: body.session,
                positions: read_positions(body.positions)?,
            }
        }
        "resumed" => {
            let body: ResumedBody = from_json(body)?;
            ServerFrame::Resumed {
                session: body.session,
                recovered: body.recovered,
                failed: body.failed,
                positions: read_positions(body.positions)?,
            }
        }
        "joined" => {
            let body: JoinedBody = from_json(body)?;
            ServerFrame::Joined {
                topic: body.topic,
                position: body.position.try_into()?,
            }
        }
        "left" => {
            let body: LeftBody = from_json(body)?;
            ServerFrame::Left { topic: body.topic }
        }
        _ => return Err(error(format!("unknown head {kind:?}"))),
    };
    if kind != "m" && words.next().is_some() {
        return Err(error(format!("{kind}: unexpected words in the head")));
    }
    Ok(parsed)
}

fn from_json<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, WireError> {
    serde_json::from_slice(body).map_err(|e| error(e.to_string()))
}

/// The head (up to the first `\n`, ASCII) and the body.
fn split(frame: &[u8]) -> Result<(&str, &[u8]), WireError> {
    let newline = frame
        .iter()
        .position(|b| *b == b'\n')
        .ok_or_else(|| error("no head"))?;
    let head = std::str::from_utf8(&frame[..newline])
        .ok()
        .filter(|h| h.is_ascii())
        .ok_or_else(|| error("the head is not ASCII"))?;
    Ok((head, &frame[newline + 1..]))
}

/// Writes `topic` with `%`, space, control characters, DEL and every byte of a non-ASCII
/// character as `%XX`: the head stays ASCII.
fn escape_into(topic: &str, out: &mut String) {
    for byte in topic.bytes() {
        if byte == b'%' || byte <= b' ' || byte >= 0x7f {
            let _ = write!(out, "%{byte:02X}");
        } else {
            out.push(char::from(byte));
        }
    }
}

/// Undoes [`escape_into`] (any `%XX` is decoded, as `decodeURIComponent` does).
fn unescape(word: &str) -> Result<String, WireError> {
    let bytes = word.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = word
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| error("a bad %-escape in a topic"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| error("a topic is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(epoch: u64, offset: u64, id: u64) -> Stamp {
        Stamp { epoch, offset, id }
    }

    #[test]
    fn openings_round_trip() {
        assert_eq!(parse_opening(b"start\n"), Ok(Opening::Start));
        let mut positions = Positions::new();
        positions.insert("all".into(), stamp(1_700_000_000_123_456, 12, 0xab));
        positions.insert("g:room 1".into(), stamp(u64::MAX, 0, 0));
        let opening = Opening::Resume {
            token: "t0k".into(),
            positions,
        };
        assert_eq!(
            parse_opening(encode_opening(&opening).as_bytes()),
            Ok(opening)
        );
        assert!(parse_opening(b"hello\n{}").is_err());
        assert!(parse_opening(b"resume\n{\"token\":1}").is_err());
        assert!(parse_opening(b"resume").is_err());
        assert!(
            parse_opening(b"resume\n{\"token\":\"t\",\"positions\":{\"all\":[\"x\",1,\"0\"]}}")
                .is_err()
        );
    }

    #[test]
    fn control_frames_round_trip() {
        let session = SessionInfo {
            session: "s1".into(),
            token: "t1".into(),
            window: 120,
        };
        let mut positions = Positions::new();
        positions.insert("u:tom".into(), stamp(5, 7, 9));
        let hello = encode_hello(&session, &positions);
        assert!(hello.starts_with("hello\n{"));
        assert_eq!(
            parse_server_frame(hello.as_bytes()),
            Ok(ServerFrame::Hello {
                session: session.clone(),
                positions: positions.clone()
            })
        );
        let failed = vec![("g:x".to_owned(), FailReason::TooFar)];
        let resumed = encode_resumed(&session, &["all".to_owned()], &failed, &positions);
        assert!(resumed.contains(r#"["g:x","too_far"]"#), "{resumed}");
        assert_eq!(
            parse_server_frame(resumed.as_bytes()),
            Ok(ServerFrame::Resumed {
                session,
                recovered: vec!["all".into()],
                failed,
                positions
            })
        );
        assert_eq!(
            parse_server_frame(encode_joined("g:a", &stamp(1, 2, 3)).as_bytes()),
            Ok(ServerFrame::Joined {
                topic: "g:a".into(),
                position: stamp(1, 2, 3)
            })
        );
        assert_eq!(
            parse_server_frame(encode_left("g:a").as_bytes()),
            Ok(ServerFrame::Left {
                topic: "g:a".into()
            })
        );
    }

    #[test]
    fn message_heads_escape_topics() {
        let head = message_head("g:a b%\n\u{e9}", &stamp(42, 7, 0x1f), false);
        assert_eq!(head, "m g:a%20b%25%0A%C3%A9 7 000000000000001f\n");
        let mut frame = head.into_bytes();
        frame.extend_from_slice(b"payload\nwith lines");
        assert_eq!(
            parse_server_frame(&frame),
            Ok(ServerFrame::Message {
                topic: "g:a b%\n\u{e9}".into(),
                offset: 7,
                id: 0x1f,
                epoch: None,
                payload: b"payload\nwith lines"
            })
        );
        let head = message_head("all", &stamp(42, 7, 1), true);
        assert_eq!(head, "m all 7 0000000000000001 42\n");
        assert!(matches!(
            parse_server_frame(head.as_bytes()),
            Ok(ServerFrame::Message {
                epoch: Some(42),
                ..
            })
        ));
        assert_eq!(parse_server_frame(b"v\nhi"), Ok(ServerFrame::Plain(b"hi")));
    }

    #[test]
    fn malformed_server_frames_are_errors() {
        for bad in [
            &b"no head"[..],
            b"x\n",
            b"m all\n",
            b"m all 1\n",
            b"m all 1 zz\n",
            b"m all one 0000000000000001\n",
            b"m %zz 1 0000000000000001\n",
            b"m all 1 0000000000000001 e\n",
            b"hello\n{",
            b"v extra\n",
            b"\xff\n",
        ] {
            assert!(parse_server_frame(bad).is_err(), "{bad:?}");
        }
    }
}
