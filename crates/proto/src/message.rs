//! Messages and the events a connection hands out.

use bytes::Bytes;

use crate::close::CloseFrame;
use crate::utf8::Utf8Bytes;

/// A complete data message (RFC 6455 §5.6), reassembled from its fragments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A text message: valid UTF-8.
    Text(Utf8Bytes),
    /// A binary message.
    Binary(Bytes),
}

impl Message {
    /// A text message.
    pub fn text(text: impl Into<Utf8Bytes>) -> Self {
        Self::Text(text.into())
    }

    /// A binary message.
    pub fn binary(data: impl Into<Bytes>) -> Self {
        Self::Binary(data.into())
    }

    /// Whether this is a text message.
    pub fn is_text(&self) -> bool {
        matches!(self, Self::Text(_))
    }

    /// The payload length in bytes.
    pub fn len(&self) -> usize {
        self.view().len()
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.view().is_empty()
    }

    /// The payload bytes, whatever the type.
    pub fn as_bytes(&self) -> &[u8] {
        self.view().as_bytes()
    }

    /// The text of a text message, `None` for a binary one.
    pub fn as_text(&self) -> Option<&str> {
        self.view().as_text()
    }

    /// The text of a text message, or an error that `?` can pass on.
    ///
    /// # Errors
    /// [`WrongType`] for a binary message.
    pub fn to_text(&self) -> Result<&str, WrongType> {
        self.view().to_text()
    }

    /// The payload as `Bytes`, sharing its storage.
    pub fn into_bytes(self) -> Bytes {
        match self {
            Self::Text(text) => text.into_bytes(),
            Self::Binary(data) => data,
        }
    }

    /// The message borrowed.
    pub fn view(&self) -> MessageRef<'_> {
        match self {
            Self::Text(text) => MessageRef::Text(text),
            Self::Binary(data) => MessageRef::Binary(data),
        }
    }
}

/// A complete data message borrowed for a moment: from the receive buffer it arrived in
/// ([`Connection::poll_event_ref`](crate::Connection::poll_event_ref)), or from an owned
/// [`Message`] ([`Message::view`]). [`MessageRef::to_owned`] keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageRef<'a> {
    /// A text message: valid UTF-8.
    Text(&'a str),
    /// A binary message.
    Binary(&'a [u8]),
}

impl<'a> MessageRef<'a> {
    /// Whether this is a text message.
    pub fn is_text(&self) -> bool {
        matches!(self, Self::Text(_))
    }

    /// The payload length in bytes.
    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The payload bytes, whatever the type.
    pub fn as_bytes(&self) -> &'a [u8] {
        match *self {
            Self::Text(text) => text.as_bytes(),
            Self::Binary(data) => data,
        }
    }

    /// The text of a text message, `None` for a binary one.
    pub fn as_text(&self) -> Option<&'a str> {
        match *self {
            Self::Text(text) => Some(text),
            Self::Binary(_) => None,
        }
    }

    /// The text of a text message, or an error that `?` can pass on.
    ///
    /// # Errors
    /// [`WrongType`] for a binary message.
    pub fn to_text(&self) -> Result<&'a str, WrongType> {
        self.as_text().ok_or(WrongType { expected: "text" })
    }

    /// An owned copy, to keep after the borrow ends.
    pub fn to_owned(&self) -> Message {
        match *self {
            Self::Text(text) => Message::Text(text.into()),
            Self::Binary(data) => Message::Binary(Bytes::copy_from_slice(data)),
        }
    }
}

impl<'a> From<&'a Message> for MessageRef<'a> {
    fn from(message: &'a Message) -> Self {
        message.view()
    }
}

impl From<MessageRef<'_>> for Message {
    fn from(message: MessageRef<'_>) -> Self {
        message.to_owned()
    }
}

impl PartialEq<Message> for MessageRef<'_> {
    fn eq(&self, other: &Message) -> bool {
        *self == other.view()
    }
}

/// What a send takes: a message that can be looked at without taking it (to encode it at
/// once, with no copy of its own) or turned into an owned [`Message`] (to queue it).
/// Implemented for messages owned and borrowed, strings (text) and byte buffers (binary);
/// sealed (a runtime calls these where its own state is borrowed): convert other types
/// into a [`Message`].
pub trait Outgoing: sealed::Sealed {
    /// The message, borrowed.
    fn view(&self) -> MessageRef<'_>;
    /// The message, owned (a copy only for the borrowed forms).
    fn into_message(self) -> Message;
}

mod sealed {
    /// Only this crate implements [`Outgoing`](super::Outgoing).
    pub trait Sealed {}
}

impl sealed::Sealed for Message {}
impl sealed::Sealed for MessageRef<'_> {}
impl sealed::Sealed for &Message {}
impl sealed::Sealed for &str {}
impl sealed::Sealed for String {}
impl sealed::Sealed for Utf8Bytes {}
impl sealed::Sealed for Vec<u8> {}
impl sealed::Sealed for Bytes {}
impl sealed::Sealed for &[u8] {}

impl Outgoing for Message {
    fn view(&self) -> MessageRef<'_> {
        Self::view(self)
    }
    fn into_message(self) -> Message {
        self
    }
}

impl Outgoing for MessageRef<'_> {
    fn view(&self) -> MessageRef<'_> {
        *self
    }
    fn into_message(self) -> Message {
        self.to_owned()
    }
}

impl Outgoing for &Message {
    fn view(&self) -> MessageRef<'_> {
        Message::view(self)
    }
    fn into_message(self) -> Message {
        self.clone()
    }
}

/// Text: `&str`, `String`, `Utf8Bytes`.
macro_rules! outgoing_text {
    ($($ty:ty),*) => {$(
        impl Outgoing for $ty {
            fn view(&self) -> MessageRef<'_> {
                MessageRef::Text(self.as_ref())
            }
            fn into_message(self) -> Message {
                Message::Text(self.into())
            }
        }
    )*};
}

/// Binary: `Vec<u8>`, `Bytes`.
macro_rules! outgoing_binary {
    ($($ty:ty),*) => {$(
        impl Outgoing for $ty {
            fn view(&self) -> MessageRef<'_> {
                MessageRef::Binary(self.as_ref())
            }
            fn into_message(self) -> Message {
                Message::Binary(Bytes::from(self))
            }
        }
    )*};
}

outgoing_text!(&str, String, Utf8Bytes);
outgoing_binary!(Vec<u8>, Bytes);

impl Outgoing for &[u8] {
    fn view(&self) -> MessageRef<'_> {
        MessageRef::Binary(self)
    }
    fn into_message(self) -> Message {
        Message::Binary(Bytes::copy_from_slice(self))
    }
}

/// A message was not of the type asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("expected a {expected} message")]
pub struct WrongType {
    /// The type that was expected: `"text"` or `"binary"`.
    pub expected: &'static str,
}

impl From<String> for Message {
    fn from(text: String) -> Self {
        Self::Text(text.into())
    }
}

impl From<&str> for Message {
    fn from(text: &str) -> Self {
        Self::Text(text.into())
    }
}

impl From<Utf8Bytes> for Message {
    fn from(text: Utf8Bytes) -> Self {
        Self::Text(text)
    }
}

impl From<Vec<u8>> for Message {
    fn from(data: Vec<u8>) -> Self {
        Self::Binary(data.into())
    }
}

impl From<Bytes> for Message {
    fn from(data: Bytes) -> Self {
        Self::Binary(data)
    }
}

impl From<&[u8]> for Message {
    fn from(data: &[u8]) -> Self {
        Self::Binary(Bytes::copy_from_slice(data))
    }
}

/// Something the peer sent, as [`Connection::poll_event_ref`](crate::Connection::poll_event_ref)
/// reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventRef<'a> {
    /// A message that arrived in one frame, lent from the receive buffer until the next
    /// `poll_event` call.
    Message(MessageRef<'a>),
    /// Any other event: pings, pongs, the close frame, and messages that arrived fragmented,
    /// compressed or larger than 4 KiB (owned).
    Owned(Event),
}

/// Something the peer sent, as [`Connection::poll_event`](crate::Connection::poll_event)
/// reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A complete data message.
    Message(Message),
    /// A ping. The pong is already queued.
    Ping(Bytes),
    /// A pong.
    Pong(Bytes),
    /// The peer's close frame (`None`: it carried no status code). Our answering close frame,
    /// if we had not sent one, is already queued; nothing more will be received.
    Close(Option<CloseFrame>),
}
