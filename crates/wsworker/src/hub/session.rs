//! Resume on the server: one connection's session under `wsworker.resume.v1`
//! (`docs/RESUME.md`). A [`ResumeState`] sits beside each connection that agreed to the
//! subprotocol; the Hub hands it every message for the connection, with the message's
//! place, and it decides what the client sees and when.
//!
//! The order of a session's frames is its whole correctness:
//!
//! - until the session is set up (the client's first frame answered) and while a joined
//!   topic's position is being read, every message for the connection waits here, in the
//!   order it came (bounded: past the limit the connection is closed with 1013, to resume);
//! - the answer (`hello`, or `resumed` and the replay) goes first, then `joined`/`left`,
//!   then what waited;
//! - per topic a *floor* — the last place the client has, as told or sent — drops anything
//!   at or before it: the seam between a replay and the live messages caught while it was
//!   read, and between a join's position and the messages that raced with its read.
//!
//! The session's record (user, groups, positions, past connection ids) is written to the
//! engine ahead — when the session is set up and on every membership change — never at
//! disconnect, so that a node killed with `kill -9` loses nothing.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use wsworker_proto::{CloseCode, Message, Utf8Bytes, encode_server_frame};

use super::Hub;
use super::engine::{Engine, EngineError, Envelope, History, Reply, Stamp, Topic};
use super::frames::{FanoutCounts, Frames};
use crate::resume::wire::{self, Opening, Positions, SessionInfo};
use crate::resume::{FailReason, ResumeConfig};
use crate::server::Connection;

/// How long setting a session up may take (the engine's reads and writes) before the
/// connection is closed with 1013, to try again.
const SETUP_TIMEOUT: Duration = Duration::from_secs(10);
/// Past connection ids a session remembers (messages that left one of them out are not
/// replayed to it).
const MAX_PAST_CONNS: usize = 16;

/// What a resumed session got: the application's copy of the client's `resumed`
/// ([`Hub::on_resume`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumeReport {
    /// The session's public id (kept across resumes when it was found).
    pub session: String,
    /// Whether the client's token named a live session; when not, every topic the client
    /// named failed with [`FailReason::Expired`].
    pub found: bool,
    /// The topics replayed.
    pub recovered: Vec<Topic>,
    /// The topics that could not be, and why: send their connections fresh state.
    pub failed: Vec<(Topic, FailReason)>,
    /// How many messages were replayed.
    pub replayed: usize,
}

/// A connection's session, as the Hub and the connection's callbacks see it.
pub(crate) struct ResumeState {
    config: ResumeConfig,
    state: Mutex<State>,
}

struct State {
    phase: Phase,
    /// Reads that must end before messages flow: the opening's, and each join's.
    waiting: usize,
    /// Messages waiting, in the order they came.
    held: VecDeque<Held>,
    /// `joined` and `left` frames waiting for the answer to the opening.
    controls: Vec<String>,
    /// Per topic, the last place the client has.
    floors: HashMap<Topic, Stamp>,
    /// Per topic, where the session joined it: a resume never replays from before (the
    /// session's record keeps these).
    joined_at: HashMap<Topic, Stamp>,
    /// Topics left while the session was set up: the setup's read of them is stale.
    stale: BTreeSet<Topic>,
    /// The connection's topics: everyone's, its user's and its groups'.
    topics: BTreeSet<Topic>,
    session: Option<Session>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The client's first frame has not come (or is being answered).
    Opening,
    /// Set up: joins are read and told, memberships written.
    Live,
    /// The connection ended: nothing more is sent or written.
    Closed,
}

enum Held {
    Placed {
        topic: Topic,
        stamp: Stamp,
        message: Message,
    },
    Plain(Message),
}

#[derive(Clone)]
struct Session {
    id: String,
    token: String,
    /// This connection's id and earlier ones of the session, newest last.
    conns: Vec<u64>,
}

/// The record of a session as the engine keeps it.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Record {
    session: String,
    uid: Option<String>,
    groups: Vec<String>,
    /// Topic key → (epoch, offset, id).
    positions: BTreeMap<String, (u64, u64, u64)>,
    conns: Vec<u64>,
}

/// The frames of one message for the resuming connections it goes to: each message with its
/// head made once, and each of its frames encoded once (compressed once per set of
/// permessage-deflate terms, as a fan-out's, see [`Frames`]).
pub(crate) struct ResumeFrames<'a> {
    topic: &'a Topic,
    stamp: Option<Stamp>,
    message: &'a Message,
    plain: Option<Frames<'static>>,
    placed: [Option<Frames<'static>>; 2],
}

impl<'a> ResumeFrames<'a> {
    /// The frames of `message`, at `stamp` in `topic` (`None`: no place).
    pub(crate) fn new(topic: &'a Topic, stamp: Option<Stamp>, message: &'a Message) -> Self {
        Self {
            topic,
            stamp,
            message,
            plain: None,
            placed: [None, None],
        }
    }

    /// The message with the plain head (`v`).
    fn plain(&mut self) -> &mut Frames<'static> {
        let message = self.message;
        self.plain
            .get_or_insert_with(|| Frames::owned(with_head(wire::PLAIN_HEAD, message)))
    }

    /// The message with its place's head.
    fn placed(&mut self, stamp: &Stamp, with_epoch: bool) -> &mut Frames<'static> {
        let (topic, message) = (self.topic, self.message);
        self.placed[usize::from(with_epoch)].get_or_insert_with(|| {
            let head = wire::message_head(&topic.key(), stamp, with_epoch);
            Frames::owned(with_head(&head, message))
        })
    }

    /// What its frames compressed, for the fan-out's counts.
    pub(crate) fn counts(&self) -> FanoutCounts {
        [&self.plain, &self.placed[0], &self.placed[1]]
            .into_iter()
            .flatten()
            .map(Frames::counts)
            .fold(FanoutCounts::default(), |sum, counts| FanoutCounts {
                compressions: sum.compressions + counts.compressions,
                compressed_sends: sum.compressed_sends + counts.compressed_sends,
                written_now: sum.written_now + counts.written_now,
            })
    }
}

/// `head` then `message`'s payload, as a message of the same type.
fn with_head(head: &str, message: &Message) -> Message {
    match message {
        Message::Text(text) => {
            let mut out = String::with_capacity(head.len() + text.len());
            out.push_str(head);
            out.push_str(text);
            Message::Text(Utf8Bytes::from(out))
        }
        Message::Binary(data) => {
            let mut out = Vec::with_capacity(head.len() + data.len());
            out.extend_from_slice(head.as_bytes());
            out.extend_from_slice(data);
            Message::Binary(out.into())
        }
    }
}

/// Whether a message's topic has places a client can resume from (not a message to one
/// connection: its id changes on resume).
fn resumable(topic: &Topic) -> bool {
    !matches!(topic, Topic::Node(_))
}

impl ResumeState {
    pub(crate) fn new(config: ResumeConfig) -> Self {
        Self {
            config,
            state: Mutex::new(State {
                phase: Phase::Opening,
                waiting: 1,
                held: VecDeque::new(),
                controls: Vec::new(),
                floors: HashMap::new(),
                joined_at: HashMap::new(),
                stale: BTreeSet::new(),
                topics: BTreeSet::from([Topic::All]),
                session: None,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every change keeps the state whole before anything that could panic.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the client's first frame is still to come (then a message from the client
    /// is that frame, not the application's).
    pub(crate) fn awaits_opening(&self) -> bool {
        let state = self.lock();
        state.phase == Phase::Opening && !state.opening_taken()
    }

    /// Queues a message of `frames` for `conn`: sent now, held, or dropped as one the
    /// client has. Returns whether it was sent or held.
    pub(crate) fn offer(&self, conn: &Connection, frames: &mut ResumeFrames<'_>) -> bool {
        let mut state = self.lock();
        if state.phase == Phase::Closed {
            return false;
        }
        let placed = frames.stamp.filter(|_| resumable(frames.topic));
        if state.waiting > 0 {
            let held = match placed {
                Some(stamp) => Held::Placed {
                    topic: frames.topic.clone(),
                    stamp,
                    message: frames.message.clone(),
                },
                None => Held::Plain(frames.message.clone()),
            };
            return self.hold(&mut state, conn, held);
        }
        match placed {
            None => frames.plain().send(conn),
            Some(stamp) => match state.pass(frames.topic, &stamp) {
                Some(with_epoch) => frames.placed(&stamp, with_epoch).send(conn),
                None => false,
            },
        }
    }

    /// Sends a message of the application's to this connection alone (`v`).
    pub(crate) fn send_plain(&self, conn: &Connection, message: Message) -> crate::Result<()> {
        let mut state = self.lock();
        match state.phase {
            Phase::Closed => Err(crate::Error::Closed),
            _ if state.waiting > 0 => {
                self.hold(&mut state, conn, Held::Plain(message));
                Ok(())
            }
            _ => conn.send_raw(with_head(wire::PLAIN_HEAD, &message)),
        }
    }

    fn hold(&self, state: &mut State, conn: &Connection, held: Held) -> bool {
        if state.held.len() >= self.config.max_buffered {
            tracing::debug!(conn = conn.id(), "too much waiting for a session's setup");
            state.close(conn, "resume buffer full");
            return false;
        }
        state.held.push_back(held);
        true
    }

    /// The connection joined `topic` (under the Hub's index lock).
    pub(crate) fn joined(&self, hub: &Hub, conn: &Connection, topic: Topic) {
        let mut state = self.lock();
        if !state.topics.insert(topic.clone()) || state.phase != Phase::Live {
            return;
        }
        state.waiting += 1;
        state.save(hub, &self.config, conn, false);
        drop(state);
        self.read_join(hub, conn, topic);
    }

    /// Reads a joined topic's position; then tells the client and lets messages flow.
    fn read_join(&self, hub: &Hub, conn: &Connection, topic: Topic) {
        let Some(engine) = hub.engine().cloned() else {
            return;
        };
        let Some(sessions) = engine.sessions() else {
            return;
        };
        let (conn, hub) = (conn.clone(), hub.downgrade());
        let config = self.config;
        let asked = topic.clone();
        let reply: Reply<Vec<Stamp>> = Box::new(move |answer| {
            let Some(resume) = conn.resume() else {
                return;
            };
            let mut state = resume.lock();
            if state.phase == Phase::Closed {
                return;
            }
            match answer.ok().and_then(|stamps| stamps.first().copied()) {
                Some(stamp) if state.topics.contains(&topic) => {
                    let position = state.raise(&topic, stamp);
                    state.joined_at.insert(topic.clone(), position);
                    state
                        .controls
                        .push(wire::encode_joined(&topic.key(), &position));
                    if let Ok(hub) = hub.get() {
                        state.save(&hub, &config, &conn, false);
                    }
                }
                Some(_) => {} // left again meanwhile
                None => {
                    state.close(&conn, "cannot read a topic's position");
                    return;
                }
            }
            state.waiting -= 1;
            state.flush(&conn);
        });
        sessions.positions(vec![asked], reply);
    }

    /// The connection left `topic` (under the Hub's index lock).
    pub(crate) fn left(&self, hub: &Hub, conn: &Connection, topic: &Topic) {
        let mut state = self.lock();
        if !state.topics.remove(topic) {
            return;
        }
        state.floors.remove(topic);
        state.joined_at.remove(topic);
        if state.phase != Phase::Live {
            state.stale.insert(topic.clone());
            return;
        }
        let frame = wire::encode_left(&topic.key());
        if state.waiting > 0 {
            state.controls.push(frame);
        } else {
            let _ = conn.send_raw(Message::text(frame));
        }
        state.save(hub, &self.config, conn, false);
    }

    /// The connection ended: the session's window starts.
    pub(crate) fn closed(&self, hub: &Hub) {
        let mut state = self.lock();
        state.phase = Phase::Closed;
        state.held.clear();
        state.controls.clear();
        if let (Some(session), Some(sessions)) = (
            &state.session,
            hub.engine().and_then(|engine| engine.sessions()),
        ) && !session.token.is_empty()
        {
            sessions.keep(&session.token, self.config.window, false);
        }
    }

    /// The client's first frame: sets the session up, in a task.
    pub(crate) fn open(hub: &Hub, conn: &Connection, frame: &[u8]) {
        let Some(resume) = conn.resume() else {
            return;
        };
        {
            let mut state = resume.lock();
            if state.opening_taken() {
                return;
            }
            state.session = Some(Session {
                id: String::new(),
                token: String::new(),
                conns: Vec::new(),
            });
        }
        let opening = match wire::parse_opening(frame) {
            Ok(opening) => opening,
            Err(error) => {
                tracing::debug!(conn = conn.id(), %error, "a bad opening frame");
                let _ = conn.close(CloseCode::PROTOCOL_ERROR, "expected start or resume");
                return;
            }
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            let _ = conn.close(CloseCode::INTERNAL_ERROR, "no runtime");
            return;
        };
        let (hub, conn) = (hub.clone(), conn.clone());
        runtime.spawn(async move {
            let setup = async {
                match opening {
                    Opening::Start => start(&hub, &conn).await,
                    Opening::Resume { token, positions } => {
                        resume_session(&hub, &conn, &token, &positions).await
                    }
                }
            };
            let result = match tokio::time::timeout(SETUP_TIMEOUT, setup).await {
                Ok(result) => result,
                Err(_) => Err(EngineError::Timeout),
            };
            if let Err(error) = result
                && let Some(resume) = conn.resume()
            {
                tracing::warn!(conn = conn.id(), %error, "a session could not be set up");
                resume.lock().close(&conn, "try again later");
            }
        });
    }

    /// The session is set up: `answer` (and `replay`) go first; then, unless `hold` (to
    /// let the application send first: [`ResumeState::release`]), what waited. `joined`
    /// are the session's join positions. Whether the answer went out (the connection is
    /// still there).
    #[allow(clippy::too_many_arguments)]
    fn establish(
        &self,
        hub: &Hub,
        conn: &Connection,
        session: Session,
        answer: String,
        replay: Vec<Message>,
        floors: Vec<(Topic, Stamp)>,
        joined: Vec<(Topic, Stamp)>,
        hold: bool,
    ) -> bool {
        let mut state = self.lock();
        let Some(sessions) = hub.engine().and_then(|engine| engine.sessions()) else {
            return false;
        };
        if state.phase == Phase::Closed {
            // Gone while it was set up: its window starts now.
            sessions.keep(&session.token, self.config.window, false);
            return false;
        }
        sessions.keep(&session.token, self.config.window, true);
        let _ = conn.send_raw(Message::text(answer));
        // Plain frames: a replay is this connection's alone, so a compression would be
        // per connection and per message (more than the replay itself costs for small
        // messages); the live messages of a fan-out are compressed once for all.
        for message in replay {
            let _ = conn.send_prepared(&encode_server_frame(&message));
        }
        let stale = std::mem::take(&mut state.stale);
        for (topic, stamp) in joined {
            if state.topics.contains(&topic) && !stale.contains(&topic) {
                state.joined_at.insert(topic, stamp);
            }
        }
        for (topic, stamp) in floors {
            if stale.contains(&topic) {
                // Left (and maybe joined again) while the answer was prepared: read anew.
                if !state.topics.contains(&topic) {
                    state.controls.push(wire::encode_left(&topic.key()));
                }
                continue;
            }
            if state.topics.contains(&topic) {
                state.raise(&topic, stamp);
            } else {
                state.controls.push(wire::encode_left(&topic.key()));
            }
        }
        state.session = Some(session);
        state.phase = Phase::Live;
        state.save(hub, &self.config, conn, false);
        drop(state);
        if !hold {
            self.release(hub, conn);
        }
        true
    }

    /// Lets what waited for the session's setup go, and reads the topics joined meanwhile.
    fn release(&self, hub: &Hub, conn: &Connection) {
        let mut state = self.lock();
        if state.phase == Phase::Closed {
            return;
        }
        state.waiting -= 1;
        let missing: Vec<Topic> = state
            .topics
            .iter()
            .filter(|topic| !state.floors.contains_key(*topic))
            .cloned()
            .collect();
        state.waiting += missing.len();
        state.flush(conn);
        drop(state);
        for topic in missing {
            self.read_join(hub, conn, topic);
        }
    }

    /// Whether the connection ended.
    fn is_closed(&self) -> bool {
        self.lock().phase == Phase::Closed
    }
}

impl State {
    /// Whether the client's first frame was taken already.
    fn opening_taken(&self) -> bool {
        self.session.is_some()
    }

    /// Whether a message at `stamp` in `topic` is new to the client (and notes it): with
    /// its epoch in the head (`Some(true)`) when the client has another epoch of the topic.
    fn pass(&mut self, topic: &Topic, stamp: &Stamp) -> Option<bool> {
        let floor = self.floors.get_mut(topic)?; // not (or no longer) the connection's topic
        if stamp.epoch < floor.epoch || (stamp.epoch == floor.epoch && stamp.offset <= floor.offset)
        {
            return None;
        }
        let with_epoch = stamp.epoch != floor.epoch;
        *floor = *stamp;
        Some(with_epoch)
    }

    /// Raises `topic`'s floor to `stamp` (never lowers it); the floor now.
    fn raise(&mut self, topic: &Topic, stamp: Stamp) -> Stamp {
        let floor = self.floors.entry(topic.clone()).or_insert(stamp);
        if (stamp.epoch, stamp.offset) > (floor.epoch, floor.offset) {
            *floor = stamp;
        }
        *floor
    }

    /// Sends what waited, once nothing is being read.
    fn flush(&mut self, conn: &Connection) {
        if self.waiting > 0 || self.phase != Phase::Live {
            return;
        }
        for control in std::mem::take(&mut self.controls) {
            let _ = conn.send_raw(Message::text(control));
        }
        while let Some(held) = self.held.pop_front() {
            let message = match held {
                Held::Plain(message) => with_head(wire::PLAIN_HEAD, &message),
                Held::Placed {
                    topic,
                    stamp,
                    message,
                } => match self.pass(&topic, &stamp) {
                    Some(with_epoch) => {
                        let head = wire::message_head(&topic.key(), &stamp, with_epoch);
                        with_head(&head, &message)
                    }
                    None => continue,
                },
            };
            let _ = conn.send_prepared(&encode_server_frame(&message));
        }
    }

    fn close(&mut self, conn: &Connection, reason: &str) {
        if self.phase == Phase::Closed {
            return;
        }
        self.phase = Phase::Closed;
        self.held.clear();
        self.controls.clear();
        let _ = conn.close(CloseCode::TRY_AGAIN_LATER, reason);
    }

    /// Writes the session's record ahead (an update; `create` for a new token).
    fn save(&self, hub: &Hub, config: &ResumeConfig, conn: &Connection, create: bool) {
        let (Some(session), Some(sessions)) = (
            &self.session,
            hub.engine().and_then(|engine| engine.sessions()),
        ) else {
            return;
        };
        if session.token.is_empty() {
            return;
        }
        let record = self.record(session);
        let conn_id = conn.id();
        sessions.save(
            &session.token,
            record,
            config.window,
            create,
            Box::new(move |answer| {
                if !matches!(answer, Ok(true)) {
                    // Claimed by a resume elsewhere (this connection is stale), or Redis
                    // refused: the next change writes it again.
                    tracing::debug!(
                        conn = conn_id,
                        ?answer,
                        "a session's record was not updated"
                    );
                }
            }),
        );
    }

    fn record(&self, session: &Session) -> Vec<u8> {
        record_bytes(session, &self.topics, &self.joined_at)
    }
}

fn record_bytes(
    session: &Session,
    topics: &BTreeSet<Topic>,
    joined_at: &HashMap<Topic, Stamp>,
) -> Vec<u8> {
    let mut record = Record {
        session: session.id.clone(),
        conns: session.conns.clone(),
        ..Record::default()
    };
    for topic in topics {
        match topic {
            Topic::Uid(uid) => record.uid = Some(uid.to_string()),
            Topic::Group(group) => record.groups.push(group.to_string()),
            Topic::All | Topic::Node(_) => {}
        }
        if let Some(stamp) = joined_at.get(topic) {
            record
                .positions
                .insert(topic.key(), (stamp.epoch, stamp.offset, stamp.id));
        }
    }
    serde_json::to_vec(&record).unwrap_or_default()
}

/// Calls `f` with a reply and waits for it.
async fn ask<T: Send + 'static>(f: impl FnOnce(Reply<T>)) -> Result<T, EngineError> {
    asked(f).answer().await
}

/// Calls `f` with a reply, to be waited for later: what is asked before any answer is
/// awaited goes to the engine in one batch.
fn asked<T: Send + 'static>(f: impl FnOnce(Reply<T>)) -> Asked<T> {
    let (tx, rx) = oneshot::channel();
    f(Box::new(move |answer| {
        let _ = tx.send(answer);
    }));
    Asked(rx)
}

/// An answer asked for ([`asked`]).
struct Asked<T>(oneshot::Receiver<Result<T, EngineError>>);

impl<T> Asked<T> {
    async fn answer(self) -> Result<T, EngineError> {
        self.0.await.unwrap_or(Err(EngineError::Stopped))
    }
}

fn random_hex(bytes: usize) -> String {
    use rand::RngCore;
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

fn new_session(conns: Vec<u64>, id: Option<String>) -> Session {
    Session {
        id: id.unwrap_or_else(|| random_hex(8)),
        // 128 random bits from the thread's CSPRNG: not guessable.
        token: random_hex(16),
        conns,
    }
}

fn engine_of(hub: &Hub) -> Result<Arc<dyn Engine>, EngineError> {
    hub.engine().cloned().ok_or(EngineError::Stopped)
}

fn sessions_of(engine: &Arc<dyn Engine>) -> Result<&dyn super::engine::Sessions, EngineError> {
    engine.sessions().ok_or(EngineError::Stopped)
}

/// The connection's topics now, as the session sees them.
fn topics_of(conn: &Connection) -> Vec<Topic> {
    conn.resume()
        .map(|resume| resume.lock().topics.iter().cloned().collect())
        .unwrap_or_default()
}

/// `start`: a new session; `hello` with every topic's position.
async fn start(hub: &Hub, conn: &Connection) -> Result<(), EngineError> {
    let engine = engine_of(hub)?;
    let sessions = sessions_of(&engine)?;
    let resume = conn.resume().ok_or(EngineError::Stopped)?;
    let topics = topics_of(conn);
    let stamps = ask(|reply| sessions.positions(topics.clone(), reply)).await?;
    let floors: Vec<(Topic, Stamp)> = topics.into_iter().zip(stamps).collect();
    let session = new_session(vec![conn.id()], None);
    let record = {
        let state = resume.lock();
        let joined: HashMap<Topic, Stamp> = floors.iter().cloned().collect();
        record_bytes(&session, &state.topics, &joined)
    };
    let window = resume.config.window;
    if !ask(|reply| sessions.save(&session.token, record, window, true, reply)).await? {
        return Err(EngineError::Backend(
            "a new session's token was taken".into(),
        ));
    }
    let positions: Positions = floors.iter().map(|(t, s)| (t.key(), *s)).collect();
    let hello = wire::encode_hello(&info(&session, window), &positions);
    let joined = floors.clone();
    resume.establish(hub, conn, session, hello, Vec::new(), floors, joined, false);
    Ok(())
}

fn info(session: &Session, window: Duration) -> SessionInfo {
    SessionInfo {
        session: session.id.clone(),
        token: session.token.clone(),
        window: window.as_secs(),
    }
}

/// `resume`: claims the session, restores its user and groups, replays what each topic
/// missed (or says why not), then lets live messages flow. Should anything fail after the
/// claim, or the connection end before the answer, the session goes back under its old
/// token: the client can try again.
async fn resume_session(
    hub: &Hub,
    conn: &Connection,
    token: &str,
    client: &Positions,
) -> Result<(), EngineError> {
    let engine = engine_of(hub)?;
    let sessions = sessions_of(&engine)?;
    let resume = conn.resume().ok_or(EngineError::Stopped)?;
    if resume.is_closed() {
        return Ok(()); // gone before anything was claimed
    }
    let window = resume.config.window;
    let claimed = ask(|reply| sessions.claim(token, reply)).await?;
    let result = resumed_from(hub, conn, sessions, client, claimed.as_deref()).await;
    if !matches!(result, Ok(true))
        && let Some(bytes) = claimed
    {
        let _ = ask(|reply| sessions.save(token, bytes, window, true, reply)).await;
    }
    result.map(|_| ())
}

/// The rest of a resume, after the claim (`claimed`: the session's record, if it was
/// found). Whether the answer went out.
async fn resumed_from(
    hub: &Hub,
    conn: &Connection,
    sessions: &dyn super::engine::Sessions,
    client: &Positions,
    claimed: Option<&[u8]>,
) -> Result<bool, EngineError> {
    let resume = conn.resume().ok_or(EngineError::Stopped)?;
    let config = resume.config;
    let record: Option<Record> = claimed.and_then(|bytes| serde_json::from_slice(bytes).ok());
    let found = record.is_some();
    let record = record.unwrap_or_default();
    // The session's user and groups come back (joins made since, by the application's
    // on_connect, stand).
    if let Some(uid) = &record.uid
        && hub.uid_of(conn.id()).is_none()
    {
        hub.bind_uid(conn.id(), uid)
            .map_err(|_| EngineError::Stopped)?;
    }
    for group in &record.groups {
        hub.join_group(conn.id(), group)
            .map_err(|_| EngineError::Stopped)?;
    }
    // Every read is asked for before any is awaited: one batch. A topic of the session's
    // is read from the client's place in it — never from before the session joined it;
    // one the session did not have (the application joined it now, or the session is
    // gone) only for its position: no history from before a join.
    let topics = topics_of(conn);
    let mut reads = Vec::new();
    for topic in &topics {
        let key = topic.key();
        let joined = record
            .positions
            .get(&key)
            .map(|&(epoch, offset, id)| Stamp { epoch, offset, id });
        let from = match (client.get(&key).copied(), joined) {
            (Some(c), Some(j)) if c.epoch == j.epoch && c.offset < j.offset => Some(j),
            (Some(c), Some(_)) => Some(c),
            (None, Some(j)) => Some(j),
            (_, None) => None,
        };
        let read = match from {
            Some(from) => {
                let max = config.max_replay + usize::from(from.offset > 0);
                Read::History(
                    from,
                    joined,
                    asked(|reply| sessions.history(topic.clone(), from.offset.max(1), max, reply)),
                )
            }
            None => Read::Position(asked(|reply| {
                sessions.positions(vec![topic.clone()], reply)
            })),
        };
        reads.push((topic.clone(), read));
    }
    let past: Vec<u64> = record.conns.clone();
    let mut report = ResumeReport {
        session: String::new(),
        found,
        recovered: Vec::new(),
        failed: Vec::new(),
        replayed: 0,
    };
    let mut replay = Vec::new();
    let mut floors = Vec::new();
    let mut joined_at = Vec::new();
    let mut positions = Positions::new();
    for (topic, read) in reads {
        let key = topic.key();
        match read {
            Read::Position(asked) => {
                let stamp = asked
                    .answer()
                    .await?
                    .first()
                    .copied()
                    .ok_or(EngineError::Stopped)?;
                if let Some(had) = client.get(&key) {
                    // The client had a place the session cannot vouch for (it is gone, or
                    // never had the topic): no replay; why, as far as can be told.
                    let reason = if had.epoch == stamp.epoch {
                        FailReason::Expired
                    } else {
                        FailReason::Epoch
                    };
                    report.failed.push((topic.clone(), reason));
                }
                positions.insert(key, stamp);
                floors.push((topic.clone(), stamp));
                joined_at.push((topic, stamp));
            }
            Read::History(from, joined, asked) => {
                let history = asked.answer().await?;
                let top = history.top;
                match recover(from, history, config.max_replay) {
                    Ok(entries) => {
                        for (stamp, envelope) in entries {
                            if envelope.except.iter().any(|id| past.contains(id)) {
                                continue;
                            }
                            let head = wire::message_head(&key, &stamp, false);
                            replay.push(with_head(&head, &envelope.message));
                            report.replayed += 1;
                        }
                        report.recovered.push(topic.clone());
                        if !client.contains_key(&key) {
                            // The client lost its place: the replay starts after this one.
                            positions.insert(key, from);
                        }
                        joined_at.push((topic.clone(), joined.unwrap_or(from)));
                    }
                    Err(reason) => {
                        report.failed.push((topic.clone(), reason));
                        positions.insert(key, top);
                        joined_at.push((topic.clone(), top));
                    }
                }
                floors.push((topic, top));
            }
        }
    }
    if !found {
        // The session is gone, and with it the memberships the client names that the
        // connection does not have now.
        for key in client.keys() {
            if let Some(topic) = Topic::from_key(key)
                && !topics.contains(&topic)
            {
                report.failed.push((topic, FailReason::Expired));
            }
        }
    }
    let mut conns = past;
    conns.push(conn.id());
    let excess = conns.len().saturating_sub(MAX_PAST_CONNS);
    conns.drain(..excess);
    let session = new_session(conns, found.then(|| record.session.clone()));
    report.session = session.id.clone();
    let bytes = {
        let state = resume.lock();
        let joined: HashMap<Topic, Stamp> = joined_at.iter().cloned().collect();
        record_bytes(&session, &state.topics, &joined)
    };
    let window = config.window;
    if !ask(|reply| sessions.save(&session.token, bytes, window, true, reply)).await? {
        return Err(EngineError::Backend(
            "a new session's token was taken".into(),
        ));
    }
    let recovered: Vec<String> = report.recovered.iter().map(Topic::key).collect();
    let failed: Vec<(String, FailReason)> = report
        .failed
        .iter()
        .map(|(topic, reason)| (topic.key(), *reason))
        .collect();
    let answer = wire::encode_resumed(&info(&session, window), &recovered, &failed, &positions);
    if !resume.establish(hub, conn, session, answer, replay, floors, joined_at, true) {
        return Ok(false);
    }
    // The application's fresh state for the failed topics goes before the live messages
    // that waited.
    hub.resumed(conn, &report);
    resume.release(hub, conn);
    Ok(true)
}

enum Read {
    /// From a place; the session's join position, when it had the topic.
    History(Stamp, Option<Stamp>, Asked<History>),
    /// Only the topic's position: the session did not have it.
    Position(Asked<Vec<Stamp>>),
}

/// What a client at `from` missed of a topic whose `history` was read, or why it cannot
/// be replayed. See `docs/RESUME.md`, "The server's checks".
pub(crate) fn recover(
    from: Stamp,
    history: History,
    max_replay: usize,
) -> Result<Vec<(Stamp, Envelope)>, FailReason> {
    let top = history.top;
    if top.epoch == 0 || top.epoch != from.epoch {
        return Err(FailReason::Epoch);
    }
    if from.offset > top.offset {
        // Offsets went back within the epoch: a lost tail.
        return Err(FailReason::Mismatch);
    }
    if top.offset - from.offset > max_replay as u64 {
        return Err(FailReason::TooFar);
    }
    if from.offset > 0 && from.offset == top.offset && top.id != 0 {
        // Nothing missed: the topic's last id (kept beyond its history) says whether the
        // client's last message is the topic's.
        return if top.id == from.id {
            Ok(Vec::new())
        } else {
            Err(FailReason::Mismatch)
        };
    }
    let mut entries = history.entries.ok_or(FailReason::TooFar)?.into_iter();
    if from.offset > 0 {
        match entries.next() {
            Some((stamp, _)) if stamp.offset == from.offset => {
                if stamp.id != from.id {
                    return Err(FailReason::Mismatch);
                }
            }
            _ => return Err(FailReason::Expired),
        }
    }
    let missed: Vec<(Stamp, Envelope)> = entries.collect();
    let contiguous = missed
        .iter()
        .enumerate()
        .all(|(i, (stamp, _))| stamp.offset == from.offset + 1 + i as u64);
    if !contiguous || from.offset + missed.len() as u64 != top.offset {
        return Err(FailReason::Expired);
    }
    Ok(missed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(epoch: u64, offset: u64, id: u64) -> Stamp {
        Stamp { epoch, offset, id }
    }

    fn entry(epoch: u64, offset: u64) -> (Stamp, Envelope) {
        (
            stamp(epoch, offset, offset * 10),
            Envelope {
                topic: Topic::All,
                conn: None,
                except: Vec::new(),
                message: Message::text(format!("m{offset}")),
                volatile: false,
            },
        )
    }

    fn history(epoch: u64, offsets: std::ops::RangeInclusive<u64>, top: u64) -> History {
        History {
            top: stamp(epoch, top, top * 10),
            entries: Some(offsets.map(|o| entry(epoch, o)).collect()),
        }
    }

    fn offsets(result: Result<Vec<(Stamp, Envelope)>, FailReason>) -> Vec<u64> {
        result.unwrap().iter().map(|(s, _)| s.offset).collect()
    }

    #[test]
    fn exactly_what_follows_the_clients_offset_is_replayed() {
        let h = history(7, 100..=150, 150);
        assert_eq!(
            offsets(recover(stamp(7, 100, 1000), h, 1000)),
            (101..=150).collect::<Vec<_>>()
        );
        // Nothing missed.
        assert_eq!(
            offsets(recover(stamp(7, 150, 1500), history(7, 150..=150, 150), 10)),
            Vec::<u64>::new()
        );
        // Offset 0: everything from 1.
        assert_eq!(
            offsets(recover(stamp(7, 0, 0), history(7, 1..=3, 3), 10)),
            vec![1, 2, 3]
        );
    }

    #[test]
    fn a_client_at_the_top_is_checked_by_the_last_id_even_with_no_history_left() {
        let gone = |id| History {
            top: stamp(7, 10, id),
            entries: Some(Vec::new()),
        };
        assert_eq!(
            offsets(recover(stamp(7, 10, 100), gone(100), 10)),
            Vec::<u64>::new()
        );
        assert_eq!(
            recover(stamp(7, 10, 100), gone(555), 10).unwrap_err(),
            FailReason::Mismatch
        );
        // An unknown last id (a topic written before ids were kept): the entry decides.
        assert_eq!(
            recover(stamp(7, 10, 100), gone(0), 10).unwrap_err(),
            FailReason::Expired
        );
    }

    #[test]
    fn each_failure_has_its_reason_and_nothing_is_replayed_in_part() {
        // Another epoch, or none.
        assert_eq!(
            recover(stamp(6, 10, 100), history(7, 10..=12, 12), 10).unwrap_err(),
            FailReason::Epoch
        );
        assert_eq!(
            recover(
                stamp(7, 10, 100),
                History {
                    top: stamp(0, 0, 0),
                    entries: Some(Vec::new())
                },
                10
            )
            .unwrap_err(),
            FailReason::Epoch
        );
        // The entry at the client's offset is trimmed away.
        assert_eq!(
            recover(stamp(7, 10, 100), history(7, 11..=12, 12), 10).unwrap_err(),
            FailReason::Expired
        );
        // Its id is another message's.
        assert_eq!(
            recover(stamp(7, 10, 999), history(7, 10..=12, 12), 10).unwrap_err(),
            FailReason::Mismatch
        );
        // Offsets went back (a lost tail, then new messages).
        assert_eq!(
            recover(stamp(7, 50, 500), history(7, 41..=45, 45), 10).unwrap_err(),
            FailReason::Mismatch
        );
        // A hole in the middle.
        let mut holed = history(7, 10..=14, 14);
        holed.entries.as_mut().unwrap().remove(2);
        assert_eq!(
            recover(stamp(7, 10, 100), holed, 10).unwrap_err(),
            FailReason::Expired
        );
        // More than the most replayed.
        assert_eq!(
            recover(stamp(7, 10, 100), history(7, 10..=21, 21), 10).unwrap_err(),
            FailReason::TooFar
        );
        assert_eq!(
            recover(
                stamp(7, 10, 100),
                History {
                    top: stamp(7, 21, 210),
                    entries: None
                },
                10
            )
            .unwrap_err(),
            FailReason::TooFar
        );
        // Offset 0 and the first entries gone.
        assert_eq!(
            recover(stamp(7, 0, 0), history(7, 2..=3, 3), 10).unwrap_err(),
            FailReason::Expired
        );
    }

    #[test]
    fn a_floor_drops_duplicates_and_tells_epoch_changes() {
        let mut state = ResumeState::new(ResumeConfig::default())
            .state
            .into_inner()
            .unwrap();
        let room = Topic::Group("room".into());
        assert_eq!(
            state.pass(&room, &stamp(7, 1, 1)),
            None,
            "not the connection's topic"
        );
        state.raise(&room, stamp(7, 10, 100));
        assert_eq!(state.pass(&room, &stamp(7, 10, 100)), None);
        assert_eq!(state.pass(&room, &stamp(7, 9, 90)), None);
        assert_eq!(state.pass(&room, &stamp(7, 11, 110)), Some(false));
        assert_eq!(
            state.pass(&room, &stamp(6, 12, 120)),
            None,
            "an older epoch"
        );
        assert_eq!(
            state.pass(&room, &stamp(8, 1, 1)),
            Some(true),
            "a new epoch is told"
        );
        assert_eq!(state.pass(&room, &stamp(8, 2, 2)), Some(false));
        // Raising never lowers.
        assert_eq!(state.raise(&room, stamp(8, 1, 1)), stamp(8, 2, 2));
    }
}
