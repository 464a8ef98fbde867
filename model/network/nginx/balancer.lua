-- balancer.lua: upstream members that nublar-agent sets at run time, without reloads.
-- The agent PUTs each upstream's live members (peers whose BFD session is Up) to the
-- control server on a unix socket; balancer_by_lua picks among them (model/network/nginx-conf.ts
-- renders the config that loads this). The approach is ingress-nginx's.
--
-- State lives in lua_shared_dict "dynups" (visible to every worker):
--   "gen"          number  global generation, incremented on every applied change
--   "boot"         string  instance id, created once per nginx *start* (survives HUP reloads
--                          because the shm zone survives; a restart gives a new one, so the
--                          agent knows it must re-push everything)
--   "m:<name>"     string  JSON {"version":N,"members":["[::1]:18081","127.0.0.1:18082"]}
--   "v:<name>"     number  = version inside m:<name>; cheap per-request change detector
--   "lock:<name>"  -       short-lived writer mutex (add() with ttl)
--
-- Each worker caches the decoded member list per upstream and re-reads "m:<name>" only
-- when "v:<name>" differs from the cached version: one shdict number lookup per request,
-- changes are visible to all workers on the very next request (no polling interval).
--
-- Passive health: lua_shared_dict "dynups_fail" key "<upstream>|<member>" (ttl FAIL_TTL)
-- is set when a try against a peer fails; new requests skip such peers while at least
-- one non-failed member exists.
--
-- The control API authenticates every request: "Authorization: Bearer <token>", where the
-- token is the content of the file init() is given (read in the master process, before the
-- workers fork; NixOS hands Nginx a credential, the lab a root-only file). Being able to
-- connect to the socket proves nothing: Nginx makes unix sockets 0666. The comparison takes
-- the same time whatever the token sent (SHA-1 of both, then every byte XORed).

local cjson = require "cjson.safe"
local balancer = require "ngx.balancer"
local bit = require "bit"

local ngx = ngx
local shm = ngx.shared.dynups
local fail_shm = ngx.shared.dynups_fail
local tonumber, tostring, type, pairs, ipairs = tonumber, tostring, type, pairs, ipairs
local str_find, str_sub, str_match, str_byte = string.find, string.sub, string.match, string.byte

local _M = { _VERSION = "1" }

local MAX_TRIES = 3        -- keep in sync with proxy_next_upstream_tries
local FAIL_TTL  = 2        -- seconds a failed peer is avoided by new requests
local MAX_MEMBERS = 256
local NAME_PAT = "^[A-Za-z0-9_.-]+$"

local MIN_TOKEN = 32       -- characters; the lab and NixOS write 64 hex digits

-- The control token, set by init() in the master and inherited by every worker; its SHA-1,
-- computed by each worker on first use.
local control_token, token_digest

-- per-worker cache: name -> { version = N, peers = { {host=, port=, id=}... } }
local cache = {}
-- per-worker round-robin cursor: name -> integer
local rr = {}

--------------------------------------------------------------------------------
-- member parsing / validation (IP literals only: the balancer phase cannot resolve DNS)
--------------------------------------------------------------------------------
local function parse_member(s)
    if type(s) ~= "string" then return nil, "member must be a string" end
    local host, port
    if str_sub(s, 1, 1) == "[" then
        host, port = str_match(s, "^(%[[0-9A-Fa-f:.]+%]):(%d+)$")
        if host and not str_find(host, ":", 1, true) then host = nil end
    else
        host, port = str_match(s, "^(%d+%.%d+%.%d+%.%d+):(%d+)$")
        if host then
            for o in host:gmatch("%d+") do
                if tonumber(o) > 255 then host = nil break end
            end
        end
    end
    if not host then
        return nil, "bad member '" .. s .. "': want 'a.b.c.d:port' or '[v6]:port'"
    end
    port = tonumber(port)
    if port < 1 or port > 65535 then return nil, "bad port in '" .. s .. "'" end
    -- NB: host keeps the brackets for IPv6: set_current_peer() runs it through
    -- ngx_parse_url(), which only recognises IPv6 in "[...]" form.
    return { host = host, port = port, id = host .. ":" .. port }
end

local function decode_state(json)
    local st = cjson.decode(json)
    if not st then return nil end
    local peers = {}
    for i, m in ipairs(st.members or {}) do
        peers[i] = parse_member(m)
    end
    return { version = st.version, peers = peers, members = st.members }
end

-- returns the cached entry for `name` (refreshed if the shared version moved), or nil
local function get_upstream(name)
    local v = shm:get("v:" .. name)
    local c = cache[name]
    if v == nil then
        cache[name] = nil
        return nil
    end
    if c and c.version == v then
        return c
    end
    local json = shm:get("m:" .. name)
    if not json then
        cache[name] = nil
        return nil
    end
    c = decode_state(json)
    cache[name] = c
    return c
end
_M.get_upstream = get_upstream

--------------------------------------------------------------------------------
-- init (init_by_lua, master process; runs again on every HUP reload)
--------------------------------------------------------------------------------
function _M.init_worker()
    math.randomseed(ngx.now() * 1000 + ngx.worker.pid())
end

-- The control token: the file's content without surrounding whitespace. Any problem stops
-- Nginx from starting (an error in init_by_lua fails the start; on a reload, the master keeps
-- its old config; `nginx -t` does not run init_by_lua): an unauthenticated control endpoint
-- must never run.
local function read_token(file)
    if type(file) ~= "string" or file == "" then
        error("nublar balancer: balancer.init(token_file) needs the control token's file", 0)
    end
    local f, err = io.open(file, "rb")
    if not f then error("nublar balancer: cannot read the control token: " .. tostring(err), 0) end
    local token = f:read("*a") or ""
    f:close()
    token = str_match(token, "^%s*(.-)%s*$")
    if #token < MIN_TOKEN then
        error("nublar balancer: the control token in " .. file .. " is " .. #token
              .. " characters long, fewer than " .. MIN_TOKEN, 0)
    end
    return token
end

function _M.init(token_file)
    control_token = read_token(token_file)
    token_digest = nil
    -- add() only succeeds when the key is absent => id survives reloads, not restarts
    shm:add("boot", string.format("%x-%x", ngx.now() * 1000, ngx.worker.pid()))
    shm:add("gen", 0)
end

-- Whether the request carries the control token. Both sides are hashed first, so the
-- comparison below always runs over 20 bytes, whatever was sent.
local function authorized()
    if not control_token then return false end
    if not token_digest then token_digest = ngx.sha1_bin(control_token) end
    local header = ngx.var.http_authorization
    if type(header) ~= "string" then return false end
    local sent = str_match(header, "^Bearer%s+(%S+)%s*$")
    if not sent then return false end
    local got = ngx.sha1_bin(sent)
    local diff = 0
    for i = 1, #token_digest do
        diff = bit.bor(diff, bit.bxor(str_byte(got, i), str_byte(token_digest, i)))
    end
    return diff == 0
end

--------------------------------------------------------------------------------
-- access phase: fast, explicit 503 with a body when an upstream has no members
--------------------------------------------------------------------------------
function _M.access()
    local name = ngx.var.nublar_upstream
    if not name or name == "" then
        ngx.status = 500
        ngx.header["Content-Type"] = "text/plain"
        ngx.say("$nublar_upstream not set for this location")
        return ngx.exit(500)
    end
    local up = get_upstream(name)
    ngx.ctx.dyn_up = up          -- snapshot for the balancer (see balance())
    if not up or #up.peers == 0 then
        ngx.status = 503
        ngx.header["Content-Type"] = "text/plain"
        ngx.header["Retry-After"] = "1"
        ngx.say("no live upstream members for ", name)
        return ngx.exit(503)
    end
end

--------------------------------------------------------------------------------
-- balancer phase
--------------------------------------------------------------------------------
local function pick(name, peers, exclude)
    local n = #peers
    local start = rr[name]
    if not start then
        -- random start per worker, otherwise every worker begins at member 1
        start = math.random(0, n - 1)
    end
    local fallback
    for i = 1, n do
        local idx = (start + i - 1) % n + 1
        local p = peers[idx]
        if not (exclude and exclude[p.id]) then
            if not fail_shm:get(name .. "|" .. p.id) then
                rr[name] = idx
                return p
            end
            fallback = fallback or idx
        end
    end
    if fallback then              -- every untried peer is marked failed: try one anyway
        rr[name] = fallback
        return peers[fallback]
    end
    return nil                    -- every peer already tried by this request
end

function _M.balance()
    local name = ngx.var.nublar_upstream
    local ctx = ngx.ctx
    local up = name and get_upstream(name)
    local peers = up and up.peers
    if (not peers or #peers == 0) and ctx.dyn_up then
        -- the upstream was emptied after this request passed the access phase:
        -- finish it with the membership snapshot it was admitted with.
        peers = ctx.dyn_up.peers
    end
    if not peers or #peers == 0 then
        -- only reachable for locations without the access hook.  Any ngx.exit() code
        -- here (503, 502, ngx.ERROR...) reaches the client as nginx's own HTML 500;
        -- ngx.exit(ngx.OK) / plain return WITHOUT set_current_peer() would make nginx
        -- connect to the [100::1]:80 placeholder - never do that.
        ngx.log(ngx.WARN, "dynups: no members for upstream '", tostring(name), "'")
        return ngx.exit(ngx.ERROR)
    end

    local tried = ctx.dyn_tried
    if not tried then
        -- first try for this request
        tried = {}
        ctx.dyn_tried = tried
        local more = #peers - 1
        if more > MAX_TRIES - 1 then more = MAX_TRIES - 1 end
        if more > 0 then
            local ok, err = balancer.set_more_tries(more)
            if not ok then ngx.log(ngx.ERR, "dynups: set_more_tries: ", err) end
        end
    else
        -- retry: record the failure of the previous peer
        local state, code = balancer.get_last_failure()
        local last = ctx.dyn_last
        if last and state == "failed" then
            fail_shm:set(name .. "|" .. last, true, FAIL_TTL)
        end
        ngx.log(ngx.INFO, "dynups: retry for '", name, "' after ", tostring(state),
                " (", tostring(code), ") from ", tostring(last))
    end

    local p = pick(name, peers, tried)
    if not p then
        -- all members already tried (list shrank mid-request): reuse round-robin
        p = pick(name, peers, nil)
    end
    tried[p.id] = true
    ctx.dyn_last = p.id

    local ok, err = balancer.set_current_peer(p.host, p.port)
    if not ok then
        ngx.log(ngx.ERR, "dynups: set_current_peer(", p.host, ", ", p.port, "): ", err)
        return ngx.exit(500)
    end
end

--------------------------------------------------------------------------------
-- control API (content_by_lua on the unix-socket server)
--------------------------------------------------------------------------------
-- Debian's lua-cjson is upstream 2.1.0 (not OpenResty's fork): no cjson.array_mt /
-- cjson.empty_array, and an empty Lua table always encodes as {}.  Arrays that may be
-- empty go through arr(), which swaps in a placeholder that encode() rewrites to [].
local EMPTY = "__dynups_empty_array__"
local function arr(t)
    if #t == 0 then return EMPTY end
    return t
end
local function encode(tbl)
    return (cjson.encode(tbl):gsub('"' .. EMPTY .. '"', "[]"))
end

local function reply(status, tbl)
    ngx.status = status
    ngx.header["Content-Type"] = "application/json"
    ngx.say(encode(tbl))
    return ngx.exit(status)
end

local function lock(name)
    local key = "lock:" .. name
    for _ = 1, 200 do                             -- up to ~1 s
        if shm:add(key, true, 2) then return key end
        ngx.sleep(0.005)
    end
    return nil
end

local function state_of(name)
    local json = shm:get("m:" .. name)
    if not json then return nil end
    local st = cjson.decode(json)
    st.members = arr(st.members or {})
    return st
end

local function list_all()
    local ups = {}
    for _, k in ipairs(shm:get_keys(0)) do
        if str_sub(k, 1, 2) == "m:" then
            local name = str_sub(k, 3)
            ups[name] = state_of(name)
        end
    end
    return {
        generation = shm:get("gen") or 0,
        boot_id = shm:get("boot"),
        pid = ngx.worker.pid(),          -- which worker answered (debug aid)
        upstreams = ups,
    }
end

local function put_upstream(name)
    ngx.req.read_body()
    local body = ngx.req.get_body_data()
    if not body then
        return reply(400, { error = "missing or too large body (JSON expected)" })
    end
    local req = cjson.decode(body)
    if type(req) ~= "table" or type(req.members) ~= "table" then
        return reply(400, { error = 'body must be {"members":[...]}' })
    end
    if #req.members > MAX_MEMBERS then
        return reply(400, { error = "too many members" })
    end
    local members, seen = {}, {}
    for i, m in ipairs(req.members) do
        local p, err = parse_member(m)
        if not p then return reply(400, { error = err }) end
        if not seen[p.id] then
            seen[p.id] = true
            members[#members + 1] = p.id
        end
        if i > MAX_MEMBERS then break end
    end

    local key = lock(name)
    if not key then return reply(503, { error = "could not acquire lock" }) end

    local cur_v = shm:get("v:" .. name)
    local expect = req.expected_version
    if expect ~= nil and expect ~= (cur_v or 0) then
        shm:delete(key)
        return reply(409, { error = "version mismatch", current_version = cur_v or 0 })
    end

    local gen, err = shm:incr("gen", 1, 0)
    if not gen then
        shm:delete(key)
        return reply(500, { error = "incr gen: " .. tostring(err) })
    end
    local st = { version = gen, members = arr(members) }
    -- write m: first, then v:.  Readers key their cache on the version *inside* m:.
    local ok, serr = shm:set("m:" .. name, encode(st))
    if ok then ok, serr = shm:set("v:" .. name, gen) end
    shm:delete(key)
    if not ok then
        return reply(500, { error = "shdict set: " .. tostring(serr) })
    end
    return reply(200, { name = name, version = gen, generation = gen, members = st.members })
end

local function delete_upstream(name)
    local key = lock(name)
    if not key then return reply(503, { error = "could not acquire lock" }) end
    if shm:get("v:" .. name) == nil then
        shm:delete(key)
        return reply(404, { name = name, deleted = false, generation = shm:get("gen") or 0 })
    end
    local gen = shm:incr("gen", 1, 0)
    shm:delete("v:" .. name)      -- readers key off v: first
    shm:delete("m:" .. name)
    shm:delete(key)
    return reply(200, { name = name, deleted = true, generation = gen })
end

function _M.control()
    if not authorized() then
        ngx.header["WWW-Authenticate"] = 'Bearer realm="nublar-control"'
        return reply(401, { error = "unauthorized: send the control token (Authorization: Bearer <token>)" })
    end
    local method = ngx.req.get_method()
    local uri = ngx.var.uri
    if uri == "/upstreams" or uri == "/upstreams/" then
        if method == "GET" then return reply(200, list_all()) end
        return reply(405, { error = "method not allowed" })
    end
    local name = str_match(uri, "^/upstreams/([^/]+)$")
    if name then
        if not str_find(name, NAME_PAT) then
            return reply(400, { error = "bad upstream name" })
        end
        if method == "GET" then
            local st = state_of(name)
            if not st then return reply(404, { error = "no such upstream", name = name }) end
            st.name = name
            st.generation = shm:get("gen")
            return reply(200, st)
        elseif method == "PUT" then
            return put_upstream(name)
        elseif method == "DELETE" then
            return delete_upstream(name)
        end
        return reply(405, { error = "method not allowed" })
    end
    if uri == "/healthz" then
        return reply(200, { ok = true, generation = shm:get("gen") or 0, boot_id = shm:get("boot") })
    end
    return reply(404, { error = "not found" })
end

return _M
