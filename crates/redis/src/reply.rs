//! Redis's replies to the engine's scripts and commands, read.

use std::time::Duration;

use redis::Value;
use wsworker::hub::Position;

pub(crate) fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

pub(crate) fn number(value: &Value) -> Option<u64> {
    match value {
        Value::Int(n) => u64::try_from(*n).ok(),
        Value::BulkString(bytes) => std::str::from_utf8(bytes).ok()?.parse().ok(),
        Value::SimpleString(s) => s.parse().ok(),
        _ => None,
    }
}

/// The publish script's `{offset, epoch}`; `None` for a serial published already.
pub(crate) fn position(value: &Value) -> Option<Position> {
    let Value::Array(items) = value else {
        return None;
    };
    let offset = number(items.first()?)?;
    let epoch = number(items.get(1)?)?;
    (offset > 0).then_some(Position { epoch, offset })
}

/// The ids in a set of connection ids.
pub(crate) fn ids(value: &Value) -> Vec<u64> {
    match value {
        Value::Array(items) | Value::Set(items) => items.iter().filter_map(number).collect(),
        _ => Vec::new(),
    }
}

/// The state script's `{top, epoch, entries}`: entries as (offset, body).
pub(crate) type State = (u64, Option<u64>, Vec<(u64, Vec<u8>)>);

pub(crate) fn parse_state(value: &Value) -> Option<State> {
    let Value::Array(items) = value else {
        return None;
    };
    let [top, epoch, entries] = items.as_slice() else {
        return None;
    };
    let top = number(top).unwrap_or(0);
    let epoch = number(epoch);
    let Value::Array(entries) = entries else {
        return None;
    };
    Some((top, epoch, entries.iter().filter_map(entry).collect()))
}

/// A stream entry `[id, ["m", body]]` as (offset, body).
pub(crate) fn entry(value: &Value) -> Option<(u64, Vec<u8>)> {
    let Value::Array(parts) = value else {
        return None;
    };
    let [id, fields] = parts.as_slice() else {
        return None;
    };
    let Value::BulkString(id) = id else {
        return None;
    };
    let offset = std::str::from_utf8(id)
        .ok()?
        .split('-')
        .next()?
        .parse()
        .ok()?;
    let Value::Array(fields) = fields else {
        return None;
    };
    match fields.as_slice() {
        [Value::BulkString(name), Value::BulkString(body)] if name == b"m" => {
            Some((offset, body.clone()))
        }
        _ => None,
    }
}

/// A topic's last offset, epoch (0: none) and last message's id (0: unknown), as the
/// positions and history scripts give them.
pub(crate) type Top = (u64, u64, u64);

fn top(offset: &Value, epoch: &Value, id: &Value) -> Top {
    (
        number(offset).unwrap_or(0),
        number(epoch).unwrap_or(0),
        number(id).unwrap_or(0),
    )
}

/// The positions script's answer: one [`Top`] per topic.
pub(crate) fn parse_positions(value: &Value) -> Option<Vec<Top>> {
    let Value::Array(items) = value else {
        return None;
    };
    items
        .iter()
        .map(|item| match item {
            Value::Array(parts) => match parts.as_slice() {
                [offset, epoch, id] => Some(top(offset, epoch, id)),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// Stream entries as (offset, body).
pub(crate) type Entries = Vec<(u64, Vec<u8>)>;

/// The history script's answer: the topic's [`Top`] and its entries (`None`: too many).
pub(crate) fn parse_history(value: &Value) -> Option<(Top, Option<Entries>)> {
    let Value::Array(items) = value else {
        return None;
    };
    let [offset, epoch, id, entries] = items.as_slice() else {
        return None;
    };
    let entries = match entries {
        Value::Array(entries) => Some(entries.iter().filter_map(entry).collect()),
        _ => None,
    };
    Some((top(offset, epoch, id), entries))
}
