//! What the engine writes to Redis and reads back: the body of a message (the same bytes
//! in a topic's stream and, behind a short text head, in its pub/sub channel), and the
//! heads that tell ordered, volatile and control messages apart.
//!
//! A body: flags (1 byte: bit 0 binary, bit 1 delivered by its origin already), the origin
//! node (u16) and instance (u64: a node id outlives a process), the instance's publish
//! serial (u64), the one connection it is for (u64, 0:
//! all of the topic's), the count of connections left out (u16) and their ids (u64 each),
//! then the payload. Integers big-endian.
//!
//! A channel message: `o<offset>,<epoch>,` + body (ordered: the publish script writes the
//! head), `v` + body (volatile), `x` + a control word (`ungroup`).

use bytes::{Buf, BufMut, Bytes, BytesMut};
use wsworker::Message;
use wsworker::hub::{Envelope, Topic};
use wsworker::proto::Utf8Bytes;

const BINARY: u8 = 1;
const ORIGIN_DELIVERED: u8 = 2;
const FIXED: usize = 1 + 2 + 8 + 8 + 8 + 2;

/// A message read back from Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Body {
    pub(crate) origin: u16,
    pub(crate) instance: u64,
    pub(crate) serial: u64,
    pub(crate) origin_delivered: bool,
    pub(crate) conn: Option<u64>,
    pub(crate) except: Vec<u64>,
    pub(crate) message: Message,
}

impl Body {
    /// The message's id for clients that resume: its origin's instance and serial, mixed.
    pub(crate) fn id(&self) -> u64 {
        message_id(self.instance, self.serial)
    }

    pub(crate) fn into_envelope(self, topic: Topic) -> Envelope {
        Envelope {
            topic,
            conn: self.conn,
            except: self.except,
            message: self.message,
            volatile: false,
        }
    }
}

/// A message's id: one number from the publishing instance (random) and its serial, never
/// 0 (which means unknown). Two messages share one only by a 1-in-2^64 chance.
pub(crate) fn message_id(instance: u64, serial: u64) -> u64 {
    // splitmix64's finalizer over both: every bit of each moves every bit of the id.
    let mut z = instance ^ serial.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)).max(1)
}

/// Encodes `envelope` as sent by instance `instance` of node `origin` with serial `serial`.
pub(crate) fn encode(
    envelope: &Envelope,
    (origin, instance): (u16, u64),
    serial: u64,
    origin_delivered: bool,
) -> Bytes {
    let (flags, payload): (u8, &[u8]) = match &envelope.message {
        Message::Text(text) => (0, text.as_bytes()),
        Message::Binary(data) => (BINARY, data),
    };
    let flags = flags
        | if origin_delivered {
            ORIGIN_DELIVERED
        } else {
            0
        };
    let except = &envelope.except[..envelope.except.len().min(usize::from(u16::MAX))];
    let mut out = BytesMut::with_capacity(FIXED + 8 * except.len() + payload.len());
    out.put_u8(flags);
    out.put_u16(origin);
    out.put_u64(instance);
    out.put_u64(serial);
    out.put_u64(envelope.conn.unwrap_or(0));
    out.put_u16(except.len() as u16);
    for id in except {
        out.put_u64(*id);
    }
    out.put_slice(payload);
    out.freeze()
}

/// Decodes a body; `None` when it is not one (another program's data on our keys).
pub(crate) fn decode(body: &[u8]) -> Option<Body> {
    if body.len() < FIXED {
        return None;
    }
    let mut buf = body;
    let flags = buf.get_u8();
    let origin = buf.get_u16();
    let instance = buf.get_u64();
    let serial = buf.get_u64();
    let conn = buf.get_u64();
    let count = usize::from(buf.get_u16());
    if buf.len() < count * 8 {
        return None;
    }
    let except = (0..count).map(|_| buf.get_u64()).collect();
    let payload = Bytes::copy_from_slice(buf);
    let message = if flags & BINARY != 0 {
        Message::Binary(payload)
    } else {
        Message::Text(Utf8Bytes::try_from(payload).ok()?)
    };
    Some(Body {
        origin,
        instance,
        serial,
        origin_delivered: flags & ORIGIN_DELIVERED != 0,
        conn: (conn != 0).then_some(conn),
        except,
        message,
    })
}

/// A channel message, parsed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Live<'a> {
    Ordered {
        offset: u64,
        epoch: u64,
        body: &'a [u8],
    },
    Volatile(&'a [u8]),
    Control(&'a [u8]),
}

pub(crate) fn parse_live(message: &[u8]) -> Option<Live<'_>> {
    let (&kind, rest) = message.split_first()?;
    match kind {
        b'o' => {
            let (offset, rest) = number(rest)?;
            let (epoch, body) = number(rest)?;
            Some(Live::Ordered {
                offset,
                epoch,
                body,
            })
        }
        b'v' => Some(Live::Volatile(rest)),
        b'x' => Some(Live::Control(rest)),
        _ => None,
    }
}

/// The decimal number before the first comma, and what follows the comma.
fn number(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let comma = bytes.iter().position(|b| *b == b',')?;
    let n = std::str::from_utf8(&bytes[..comma]).ok()?.parse().ok()?;
    Some((n, &bytes[comma + 1..]))
}

/// The volatile channel message of `body`.
pub(crate) fn volatile(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + body.len());
    out.push(b'v');
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_round_trip() {
        for message in [Message::text("hello tom"), Message::binary(vec![0, 255, 7])] {
            let envelope = Envelope {
                topic: Topic::Group("room".into()),
                conn: Some(99),
                except: vec![3, 4],
                message: message.clone(),
                volatile: false,
            };
            let body = decode(&encode(&envelope, (7, 99), 42, true)).unwrap();
            assert_eq!(
                body,
                Body {
                    origin: 7,
                    instance: 99,
                    serial: 42,
                    origin_delivered: true,
                    conn: Some(99),
                    except: vec![3, 4],
                    message
                }
            );
        }
    }

    #[test]
    fn foreign_bytes_are_refused_not_misread() {
        assert_eq!(decode(b"short"), None);
        let mut bad = encode(
            &Envelope {
                topic: Topic::All,
                conn: None,
                except: vec![],
                message: Message::text("x"),
                volatile: false,
            },
            (1, 1),
            1,
            false,
        )
        .to_vec();
        bad.push(0xff); // not UTF-8 in a text message
        assert_eq!(decode(&bad), None);
        assert_eq!(parse_live(b"o12,x,"), None);
        assert_eq!(parse_live(b"q"), None);
        assert_eq!(
            parse_live(b"o12,345,abc"),
            Some(Live::Ordered {
                offset: 12,
                epoch: 345,
                body: b"abc"
            })
        );
    }
}
