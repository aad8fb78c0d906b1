//! The Lua scripts the engine runs in Redis: each is one atomic step, so that no other
//! node can see half of it.
//!
//! Keys, under the engine's prefix `P`: `P:t:TOPIC` (hash: `o` the topic's last offset,
//! `e` its epoch, `r` the server run that wrote them, `l` the id of its last message),
//! `P:s:TOPIC` (the topic's stream, entry ids `OFFSET-1`), `P:c:TOPIC` (its
//! pub/sub channel), `P:p:TOPIC` (set: the ids of a user's or group's connections on every
//! node), `P:n:NODE` (set: `CONN|TOPIC`, a node's presence entries, for its purge),
//! `P:node:NODE` (the instance that owns a node id), `P:nodes` (sorted set: node id →
//! last heartbeat, in Redis's own clock), `P:serial:NODE:INSTANCE` (an instance's last
//! published serial), `P:sess:TOKEN` (a resumable session's record) and
//! `P:sess:TOKEN:claimed` (a session resumed elsewhere: its old token stays dead). Scripts
//! build some keys from the prefix: one Redis server (or a
//! Sentinel-managed primary), not Redis Cluster.

/// Publishes one ordered message. KEYS: topic hash, topic stream, the instance's serial
/// key. ARGV: channel, body, stream length, stream TTL (ms), offset TTL (ms), serial,
/// serial TTL (ms), the server's run id, `1` if the server is durable, the message's id.
/// Returns `{offset, epoch}`, or `{0, "0"}` when this serial was published already (a
/// batch retried after its reply was lost).
///
/// A topic with no epoch gets one. A topic whose offsets another run of the server wrote
/// (`r`: restored from a snapshot after a restart, or a replica promoted) starts a new
/// epoch at offset 1: its offsets may have gone back, and reusing them would pass new
/// messages for old ones — unless the server is durable (AOF with `appendfsync always`,
/// not a promoted replica), whose restart loses nothing. A new epoch is above the old one
/// even when the server's clock went back (a failover to a host whose clock is behind).
pub(crate) const PUBLISH: &str = r"
local last = tonumber(redis.call('GET', KEYS[3]) or '0')
if tonumber(ARGV[6]) <= last then
  return {0, '0'}
end
redis.call('SET', KEYS[3], ARGV[6], 'PX', ARGV[7])
local off = redis.call('HINCRBY', KEYS[1], 'o', 1)
local epoch = redis.call('HGET', KEYS[1], 'e')
local run = redis.call('HGET', KEYS[1], 'r')
if not epoch or (run ~= ARGV[8] and ARGV[9] ~= '1') then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
  epoch = string.format('%d', math.max(now, tonumber(epoch or '0') + 1))
  off = 1
  redis.call('HSET', KEYS[1], 'o', 1, 'e', epoch, 'r', ARGV[8])
  redis.call('DEL', KEYS[2])
elseif run ~= ARGV[8] then
  redis.call('HSET', KEYS[1], 'r', ARGV[8])
end
redis.call('HSET', KEYS[1], 'l', ARGV[10])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], off .. '-1', 'm', ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('PUBLISH', ARGV[1], 'o' .. off .. ',' .. epoch .. ',' .. ARGV[2])
return {off, epoch}
";

/// A topic's state, and a range of its stream. KEYS: topic hash, topic stream. ARGV: first
/// and last offset (0 0: no range). Returns `{last offset or '', epoch or '', entries}`.
pub(crate) const STATE: &str = r"
local st = redis.call('HMGET', KEYS[1], 'o', 'e')
local entries = {}
if tonumber(ARGV[2]) > 0 then
  entries = redis.call('XRANGE', KEYS[2], ARGV[1], ARGV[2])
end
return {st[1] or '', st[2] or '', entries}
";

/// The current position of topics, for clients that resume: each topic's last offset,
/// epoch and last message id. KEYS: a topic hash and its stream, for each topic. ARGV:
/// the server's run id, `1` if durable, offset TTL (ms). A topic with no epoch (or one
/// another run wrote, on a server that is not durable: see [`PUBLISH`]) gets a new one at
/// offset 0, so that a position given before the topic's first message still tells its
/// history from a lost one. Returns `{offset, epoch, id}` per topic.
pub(crate) const POSITIONS: &str = r"
local out = {}
for i = 1, #KEYS, 2 do
  local st = redis.call('HMGET', KEYS[i], 'o', 'e', 'r', 'l')
  local off, epoch, id = st[1] or '0', st[2], st[4] or '0'
  if not epoch or (st[3] ~= ARGV[1] and ARGV[2] ~= '1') then
    local t = redis.call('TIME')
    local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
    epoch = string.format('%d', math.max(now, tonumber(epoch or '0') + 1))
    off, id = '0', '0'
    redis.call('HSET', KEYS[i], 'o', 0, 'e', epoch, 'r', ARGV[1], 'l', 0)
    redis.call('PEXPIRE', KEYS[i], ARGV[3])
    redis.call('DEL', KEYS[i + 1])
  end
  table.insert(out, {off, epoch, id})
end
return out
";

/// A topic's history for a client that resumes. KEYS: topic hash, topic stream. ARGV:
/// first offset, most entries, the server's run id, `1` if durable. Returns `{last offset
/// or '', epoch or '' (none, or written by another run of a server that is not durable),
/// the last message's id or '', entries from the first offset to the last, or 'far' when
/// more than the most}`. The last id outlives the stream (which expires after the history
/// TTL): a quiet topic still tells a client that missed nothing from one that missed.
pub(crate) const HISTORY: &str = r"
local st = redis.call('HMGET', KEYS[1], 'o', 'e', 'r', 'l')
local epoch = st[2] or ''
if st[3] ~= ARGV[3] and ARGV[4] ~= '1' then
  epoch = ''
end
local top = tonumber(st[1] or '0')
local from = tonumber(ARGV[1])
local entries = {}
if top - from + 1 > tonumber(ARGV[2]) then
  entries = 'far'
elseif top >= from then
  entries = redis.call('XRANGE', KEYS[2], from, top)
end
return {st[1] or '', epoch, st[4] or '', entries}
";

/// Writes a session's record. KEYS: the session's key, its claimed mark. ARGV: the record,
/// its TTL (ms), `1` for a new session. A new one only if the token is unused; an update
/// (which also brings back a record Redis lost) only if no resume claimed the session.
/// Returns 1 if written.
pub(crate) const SESSION_SAVE: &str = r"
if ARGV[3] == '1' then
  if redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2], 'NX') then return 1 end
  return 0
end
if redis.call('EXISTS', KEYS[2]) == 1 then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
";

/// Takes a session's record, and marks it claimed so that its old connection (on a node
/// that does not know yet) cannot write it back. KEYS: the session's key, its claimed
/// mark. ARGV: how long the mark stays (ms). Returns the record or nil.
pub(crate) const SESSION_CLAIM: &str = r"
local record = redis.call('GET', KEYS[1])
if record then
  redis.call('DEL', KEYS[1])
  redis.call('SET', KEYS[2], 1, 'PX', ARGV[1])
end
return record
";

/// A node's heartbeat, and the purge of every node whose heartbeat is older than the TTL.
/// KEYS: `P:nodes`, `P:node:NODE`. ARGV: node id, instance, TTL (ms), prefix. Returns
/// `{1 if this node was not registered (first beat, or purged meanwhile) else 0, purged
/// node ids}`; an error when the node id belongs to another live instance.
pub(crate) const HEARTBEAT: &str = r"
local function purge(id)
  local key = ARGV[4] .. ':n:' .. id
  for _, entry in ipairs(redis.call('SMEMBERS', key)) do
    local sep = string.find(entry, '|', 1, true)
    if sep then
      redis.call('SREM', ARGV[4] .. ':p:' .. string.sub(entry, sep + 1), string.sub(entry, 1, sep - 1))
    end
  end
  redis.call('DEL', key, ARGV[4] .. ':node:' .. id)
  redis.call('ZREM', KEYS[1], id)
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[3])
local owner = redis.call('GET', KEYS[2])
if owner and owner ~= ARGV[2] then
  local seen = redis.call('ZSCORE', KEYS[1], ARGV[1])
  if seen and now - tonumber(seen) <= ttl then
    return redis.error_reply('WSWORKER node id ' .. ARGV[1] .. ' is taken by a live node')
  end
  purge(ARGV[1])
end
local purged = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - ttl)) do
  if id ~= ARGV[1] then
    purge(id)
    table.insert(purged, id)
  end
end
redis.call('SET', KEYS[2], ARGV[2])
local new = redis.call('ZADD', KEYS[1], now, ARGV[1])
return {new, purged}
";

/// Takes a stopping node's entries out at once. KEYS: `P:nodes`. ARGV: node id, instance,
/// prefix. Only when the node id still belongs to this instance.
pub(crate) const LEAVE: &str = r"
local node = ARGV[3] .. ':node:' .. ARGV[1]
if redis.call('GET', node) ~= ARGV[2] then
  return 0
end
local key = ARGV[3] .. ':n:' .. ARGV[1]
for _, entry in ipairs(redis.call('SMEMBERS', key)) do
  local sep = string.find(entry, '|', 1, true)
  if sep then
    redis.call('SREM', ARGV[3] .. ':p:' .. string.sub(entry, sep + 1), string.sub(entry, 1, sep - 1))
  end
end
redis.call('DEL', key, node)
redis.call('ZREM', KEYS[1], ARGV[1])
return 1
";
