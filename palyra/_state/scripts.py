"""The Lua scripts that keep budgets on Redis: each operation is one script,
so it is atomic across every process that shares the Redis.

A budget window is a hash ``K`` (``spent``, ``reserved``, ``loaded``, ``seq``
and ``alert:<fraction>`` flags) with three companions: ``K:r`` (reservation
id -> amount), ``K:x`` (reservation id -> expiry, epoch ms: what a dead
process held is let go when it expires) and, for a rolling window, ``K:e``
(``"<seq>:<amount>"`` -> when it was spent, aged out by the scripts).
Amounts are integers: nano-dollars for ``usd`` budgets, tokens for
``tokens`` ones. Computed numbers go back to Redis through ``%d``: Lua's
own number-to-string turns large integers into ``1e+15``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
    "ALERTS",
    "BOOT",
    "FORGET",
    "LOAD",
    "PEEK",
    "REASSERT",
    "RENEW",
    "RESERVE",
    "SETTLE",
    "UNLOAD",
    "many",
    "many_args",
]

_HELPERS = """
local function purge(k, now)
  local ids = redis.call('ZRANGEBYSCORE', k .. ':x', '-inf', now)
  if #ids == 0 then return end
  local freed = 0
  for _, id in ipairs(ids) do
    local held = redis.call('HGET', k .. ':r', id)
    if held then
      freed = freed + tonumber(held)
      redis.call('HDEL', k .. ':r', id)
    end
  end
  redis.call('HINCRBY', k, 'reserved', string.format('%d', -freed))
  redis.call('ZREMRANGEBYSCORE', k .. ':x', '-inf', now)
end
local function age(k, roll, now)
  if roll <= 0 then return end
  local cutoff = '(' .. string.format('%d', now - roll)
  local old = redis.call('ZRANGEBYSCORE', k .. ':e', '-inf', cutoff)
  if #old == 0 then return end
  local total = 0
  for _, m in ipairs(old) do
    total = total + tonumber(string.sub(m, string.find(m, ':', 1, true) + 1))
  end
  redis.call('HINCRBY', k, 'spent', string.format('%d', -total))
  redis.call('ZREMRANGEBYSCORE', k .. ':e', '-inf', cutoff)
end
local function keep(k, ttl)
  if ttl > 0 then
    for _, key in ipairs({k, k .. ':r', k .. ':x', k .. ':e', k .. ':pre'}) do
      redis.call('PEXPIRE', key, ttl)
    end
  end
end
"""

RESERVE = (
    _HELPERS
    + """
-- KEYS: the windows, then the boot token's key and the quiet key. ARGV:
-- now, id, expiry, the boot token this process last saw ('' for none yet),
-- a new token, the quiet period (ms), then per window: amount, limit (''
-- for none), roll (ms, 0: not rolling), ttl (ms, 0: none). Admitted, it
-- answers each window's spent and reserved after it (routing's view).
--
-- The boot token tells a Redis that lost its data (a restart without
-- persistence): a process that saw another token re-asserts the
-- reservations of its calls in flight, and the first to find the token
-- gone starts a quiet period in which nobody is admitted, so that every
-- live process has re-asserted before new calls are counted.
local n = #KEYS - 2
local bootkey, quietkey = KEYS[n + 1], KEYS[n + 2]
local boot = redis.call('GET', bootkey)
if not boot then
  boot = ARGV[5]
  redis.call('SET', bootkey, boot)
  if ARGV[4] ~= '' then
    redis.call('SET', quietkey, '1', 'PX', ARGV[6])
    return {'boot', boot}
  end
elseif ARGV[4] ~= '' and boot ~= ARGV[4] then
  return {'boot', boot}
end
if redis.call('EXISTS', quietkey) == 1 then
  return {'quiet', boot, redis.call('PTTL', quietkey)}
end
local now = tonumber(ARGV[1])
for i = 1, n do
  local k, b = KEYS[i], 6 + (i - 1) * 4
  if not redis.call('HGET', k, 'loaded') then return {'load', boot, i} end
  purge(k, now)
  age(k, tonumber(ARGV[b + 3]), now)
  local limit = ARGV[b + 2]
  if limit ~= '' then
    local v = redis.call('HMGET', k, 'spent', 'reserved')
    local spent, reserved = v[1] or '0', v[2] or '0'
    if tonumber(spent) + tonumber(reserved) + tonumber(ARGV[b + 1])
        > tonumber(limit) then
      return {'refused', boot, i, spent, reserved}
    end
  end
end
local out = {'ok', boot}
for i = 1, n do
  local k, b = KEYS[i], 6 + (i - 1) * 4
  local reserved = redis.call('HINCRBY', k, 'reserved', ARGV[b + 1])
  redis.call('HSET', k .. ':r', ARGV[2], ARGV[b + 1])
  redis.call('ZADD', k .. ':x', ARGV[3], ARGV[2])
  keep(k, tonumber(ARGV[b + 4]))
  out[#out + 1] = redis.call('HGET', k, 'spent') or '0'
  out[#out + 1] = reserved
end
return out
"""
)

LOAD = """
-- KEYS: a window not loaded yet, its budget's set of scope values in this
-- period. ARGV:
-- spent (the ledger's), ttl, scope value, when the ledger was read (ms),
-- roll (ms, 0: not rolling), then (at, amount) pairs of a rolling window's
-- spending. Settles that came before the load (``K:pre``) count only if
-- they came after the ledger was read: the read counted the others.
-- Answers 1 when loaded, 0 when it already was, -1 when the read came
-- before the window was unloaded (UNLOAD): read again.
local k = KEYS[1]
redis.call('SADD', KEYS[2], ARGV[3])
local ttl = tonumber(ARGV[2])
if ttl > 0 and tonumber(ARGV[5]) == 0 and redis.call('PTTL', KEYS[2]) < ttl then
  -- a calendar period's values live as long as its windows; a rolling
  -- window's are dropped one by one as their windows expire (FORGET)
  redis.call('PEXPIRE', KEYS[2], ttl)
end
if redis.call('HGET', k, 'loaded') then return 0 end
local unloaded = redis.call('HGET', k, 'unloaded')
if unloaded and tonumber(ARGV[4]) < tonumber(unloaded) then
  return -1  -- read before an UNLOAD: read the ledger again
end
local extra, roll = 0, tonumber(ARGV[5])
local pre = redis.call('ZRANGEBYSCORE', k .. ':pre', ARGV[4], '+inf', 'WITHSCORES')
for j = 1, #pre, 2 do
  local m = pre[j]
  local amount = string.sub(m, string.find(m, ':', 1, true) + 1)
  extra = extra + tonumber(amount)
  if roll > 0 then
    local seq = redis.call('HINCRBY', k, 'seq', 1)
    redis.call('ZADD', k .. ':e', pre[j + 1], seq .. ':' .. amount)
  end
end
redis.call('DEL', k .. ':pre')
redis.call('HINCRBY', k, 'spent', ARGV[1])
redis.call('HINCRBY', k, 'spent', string.format('%d', extra))
for j = 6, #ARGV, 2 do
  local seq = redis.call('HINCRBY', k, 'seq', 1)
  redis.call('ZADD', k .. ':e', ARGV[j], seq .. ':' .. ARGV[j + 1])
end
redis.call('HSET', k, 'loaded', ARGV[4])
if ttl > 0 then redis.call('PEXPIRE', k, ttl) end
return 1
"""

SETTLE = (
    _HELPERS
    + """
-- KEYS: the windows, then the set of settled ids. ARGV: now (when the call
-- ended and was recorded), id, then per window: actual, roll, ttl, alerts
-- ("fraction=units,..."). Once per id: a retried settle whose first answer
-- was lost changes nothing. A window loaded from a ledger read after the
-- call ended already counts it; a window not loaded yet keeps the amount
-- aside (``K:pre``) for its load to decide. Returns the
-- "i=fraction=spent" alerts this settle is the first to pass (claimed here,
-- so each is sent once across every process).
local done = KEYS[#KEYS]
local now = tonumber(ARGV[1])
if redis.call('ZSCORE', done, ARGV[2]) then return {} end
redis.call('ZADD', done, now, ARGV[2])
redis.call('ZREMRANGEBYSCORE', done, '-inf', string.format('%d', now - 3600000))
redis.call('PEXPIRE', done, 3600000)
local out = {}
for i = 1, #KEYS - 1 do
  local k, b = KEYS[i], 2 + (i - 1) * 4
  local held = redis.call('HGET', k .. ':r', ARGV[2])
  if held then
    -- %d, not '-' .. held: Redis refuses "-0" (a call that cost nothing)
    redis.call('HINCRBY', k, 'reserved', string.format('%d', -tonumber(held)))
    redis.call('HDEL', k .. ':r', ARGV[2])
    redis.call('ZREM', k .. ':x', ARGV[2])
  end
  local actual, roll = ARGV[b + 1], tonumber(ARGV[b + 2])
  local loaded = redis.call('HGET', k, 'loaded')
  if actual ~= '0' then
    if not loaded then
      local seq = redis.call('HINCRBY', k, 'seq', 1)
      redis.call('ZADD', k .. ':pre', now, seq .. ':' .. actual)
    elseif tonumber(loaded) <= now then
      redis.call('HINCRBY', k, 'spent', actual)
      if roll > 0 then
        local seq = redis.call('HINCRBY', k, 'seq', 1)
        redis.call('ZADD', k .. ':e', now, seq .. ':' .. actual)
      end
    end
  end
  age(k, roll, now)
  keep(k, tonumber(ARGV[b + 3]))
  local spent = redis.call('HGET', k, 'spent') or '0'
  for frac, units in string.gmatch(ARGV[b + 4], '([^=,]+)=([^,]+)') do
    if tonumber(spent) >= tonumber(units)
        and redis.call('HSETNX', k, 'alert:' .. frac, '1') == 1 then
      table.insert(out, i .. '=' .. frac .. '=' .. spent)
    end
  end
end
return out
"""
)

ALERTS = """
-- KEYS: windows. ARGV: per window, alerts ("fraction=units,..."). The
-- "i=fraction=spent" thresholds passed and not yet claimed by anyone.
local out = {}
for i, k in ipairs(KEYS) do
  local spent = redis.call('HGET', k, 'spent') or '0'
  for frac, units in string.gmatch(ARGV[i], '([^=,]+)=([^,]+)') do
    if tonumber(spent) >= tonumber(units)
        and redis.call('HSETNX', k, 'alert:' .. frac, '1') == 1 then
      table.insert(out, i .. '=' .. frac .. '=' .. spent)
    end
  end
end
return out
"""

PEEK = (
    _HELPERS
    + """
-- KEYS: windows. ARGV: now, then per window: roll. Per window: loaded (0/1),
-- spent, reserved, calls in flight, oldest spending's time ('' if none).
local now = tonumber(ARGV[1])
local out = {}
for i, k in ipairs(KEYS) do
  local roll = tonumber(ARGV[1 + i])
  purge(k, now)
  age(k, roll, now)
  local v = redis.call('HMGET', k, 'loaded', 'spent', 'reserved')
  local oldest = ''
  if roll > 0 then
    local first = redis.call('ZRANGE', k .. ':e', 0, 0, 'WITHSCORES')
    if #first == 2 then oldest = first[2] end
  end
  table.insert(out, {v[1] and 1 or 0, v[2] or '0', v[3] or '0',
                     redis.call('HLEN', k .. ':r'), oldest})
end
return out
"""
)

RENEW = """
-- KEYS: a live reservation's windows, then the set of settled ids. ARGV:
-- id, expiry, then each window's amount. Moves a live call's expiry on (a
-- stream read for longer than its first lease), and puts back a hold
-- Redis no longer has: one its expiry let go while this process could
-- not reach Redis, or one a Redis that lost its data forgot. A call
-- settled meanwhile is left alone.
local done = KEYS[#KEYS]
if redis.call('ZSCORE', done, ARGV[1]) then return 0 end
for i = 1, #KEYS - 1 do
  local k = KEYS[i]
  if redis.call('HSETNX', k .. ':r', ARGV[1], ARGV[2 + i]) == 1 then
    redis.call('HINCRBY', k, 'reserved', ARGV[2 + i])
  end
  redis.call('ZADD', k .. ':x', ARGV[2], ARGV[1])
end
return 1
"""

REASSERT = RENEW
"""Putting back what a Redis that lost its data forgot is a renewal."""

UNLOAD = """
-- KEYS: windows some of whose settlements were dropped (a long outage).
-- ARGV: now (ms). Forget their spending, so that the next reserve rebuilds
-- it from the ledger, which has every call; the reservations of calls in
-- flight stay, and so do settles waiting for a load (K:pre). A load that
-- read the ledger before now is refused: it would miss what was counted
-- here since its read. A window already gone is left gone.
for _, k in ipairs(KEYS) do
  if redis.call('EXISTS', k) == 1 then
    redis.call('HDEL', k, 'loaded')
    redis.call('HSET', k, 'spent', 0, 'unloaded', ARGV[1])
    redis.call('DEL', k .. ':e')
  end
end
return #KEYS
"""

BOOT = "return redis.call('GET', KEYS[1])"

FORGET = """
-- KEYS: a rolling per-value window, its budget's set of values. ARGV: the
-- value. A window whose keys expired (unused for its length and an hour)
-- leaves the set: 1; one still there stays: 0.
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('SREM', KEYS[2], ARGV[1])
return 1
"""

_MANY = """
local function one(KEYS, ARGV)
%s
end
-- KEYS: every call's keys, one call after the other. ARGV: per call, its
-- number of keys, its number of args and its args joined by \\31 (one
-- string to send instead of a dozen). Each call runs as the script alone
-- would, in order; one that fails is an error in its place and the others
-- go on.
local out, kpos = {}, 1
for j = 1, #ARGV, 3 do
  local nk, na, joined = tonumber(ARGV[j]), tonumber(ARGV[j + 1]), ARGV[j + 2]
  local keys, argv, from = {}, {}, 1
  for i = 1, nk do keys[i] = KEYS[kpos + i - 1] end
  kpos = kpos + nk
  if na > 0 then
    while true do
      local at = string.find(joined, '\\31', from, true)
      if not at then argv[#argv + 1] = string.sub(joined, from); break end
      argv[#argv + 1] = string.sub(joined, from, at - 1)
      from = at + 1
    end
  end
  local ok, answer = pcall(one, keys, argv)
  if ok then
    out[#out + 1] = answer
  else
    if type(answer) == 'table' then answer = answer.err end
    out[#out + 1] = redis.error_reply(tostring(answer))
  end
end
return out
"""
_many: dict[str, str] = {}


def many(script: str) -> str:
    """``script`` for several calls at once: one script run on Redis
    instead of one per call (each run costs Redis more than the commands
    in it). Each call still runs alone in its turn, as `many_args` packs."""
    found = _many.get(script)
    if found is None:
        found = _many[script] = _MANY % script
    return found


def many_args(
    calls: Sequence[tuple[Sequence[str], Sequence[Any]]],
) -> tuple[list[str], list[Any]] | None:
    """The keys and args of a `many` script for ``calls`` (keys, args), or
    None if an argument holds the separator (the calls go one by one)."""
    keys: list[str] = []
    args: list[Any] = []
    for call_keys, call_args in calls:
        joined = "\x1f".join(map(str, call_args))
        if joined.count("\x1f") != max(len(call_args) - 1, 0):
            return None
        keys += call_keys
        args += [len(call_keys), len(call_args), joined]
    return keys, args
