-- Flow Lock forward-auth for HAProxy (2.5 or later: core.httpclient).
--
-- An http-request action that asks Flow Lock's /check endpoint about the
-- request and leaves the answer in transaction variables for haproxy.cfg
-- to act on (see deploy/haproxy/haproxy.cfg):
--
--   txn.flowlock              "allow", "deny", "unavailable" or "error"
--   txn.flowlock_risk         0-100, on allow: for X-Flowlock-Risk upstream
--   txn.flowlock_retry_after  seconds, on deny: for Retry-After
--   txn.flowlock_body         the JSON body, on deny
--   txn.flowlock_route        "honeypot" when Flow Lock routes the client to
--                             the decoy (--quarantine-action honeypot), on allow
--
-- Usage, with the URL of Flow Lock's forward-auth listener:
--
--   global
--       lua-load /etc/haproxy/flowlock.lua
--   frontend api
--       http-request lua.flowlock http://127.0.0.1:9192/check
--
-- Flow Lock must trust HAProxy's address (--trusted-proxies): the client
-- is sent as the last X-Forwarded-For entry, after any the request brought.

-- Headers not passed on to Flow Lock: hop-by-hop and body framing, and
-- every header that describes the request to Flow Lock, which this action
-- sets itself so that a client cannot choose them.
local skip = {
    ["connection"] = true, ["keep-alive"] = true, ["proxy-connection"] = true,
    ["te"] = true, ["trailer"] = true, ["transfer-encoding"] = true,
    ["upgrade"] = true, ["expect"] = true, ["content-length"] = true,
    ["host"] = true, ["accept-encoding"] = true, -- httpclient cannot decompress
    ["x-forwarded-for"] = true, ["x-real-ip"] = true,
    ["x-forwarded-uri"] = true, ["x-forwarded-method"] = true,
    ["x-original-uri"] = true, ["x-original-method"] = true,
}

-- values returns a header's values as a list, whether HAProxy indexed the
-- table from 0 (request headers) or 1.
local function values(t)
    local out = {}
    if t == nil then
        return out
    end
    if t[0] ~= nil then
        out[#out + 1] = t[0]
    end
    for _, v in ipairs(t) do
        out[#out + 1] = v
    end
    return out
end

local function first(t)
    return values(t)[1]
end

-- HAProxy 2.6's httpclient retries a refused connection three times, a
-- second apart. So after Flow Lock failed to answer, requests skip the
-- check (fail open at once) until retry_at, instead of waiting 3 s each.
local pause = 2 -- seconds
local retry_at = 0

local function check(txn, url)
    if core.now().sec < retry_at then
        txn:set_var("txn.flowlock", "unavailable")
        return
    end
    local headers = {}
    local forwarded = {}
    for name, vals in pairs(txn.http:req_get_headers()) do
        if name == "x-forwarded-for" then
            forwarded = values(vals)
        elseif not skip[name] and name:sub(1, 11) ~= "x-flowlock-" then
            headers[name] = values(vals)
        end
    end
    forwarded[#forwarded + 1] = txn.sf:src()
    headers["x-forwarded-for"] = { table.concat(forwarded, ", ") }
    headers["x-forwarded-method"] = { txn.sf:method() }
    headers["x-forwarded-uri"] = { txn.sf:pathq() }

    local ok, res = pcall(function()
        return core.httpclient():get{ url = url, headers = headers, timeout = 1000 }
    end)
    local status = ok and res and tonumber(res.status) or 0
    if status >= 200 and status < 300 then
        txn:set_var("txn.flowlock", "allow")
        local risk = tonumber(first(res.headers and res.headers["x-flowlock-risk"]))
        if risk ~= nil then
            txn:set_var("txn.flowlock_risk", risk)
        end
        if first(res.headers and res.headers["x-flowlock-route"]) == "honeypot" then
            txn:set_var("txn.flowlock_route", "honeypot")
        end
    elseif status == 403 then
        txn:set_var("txn.flowlock", "deny")
        txn:set_var("txn.flowlock_retry_after", first(res.headers and res.headers["retry-after"]) or "1")
        txn:set_var("txn.flowlock_body", res.body or "")
    elseif status == 0 or status == 502 or status == 503 or status == 504 then
        -- No answer: Flow Lock is down, unreachable or too slow.
        txn:set_var("txn.flowlock", "unavailable")
        retry_at = core.now().sec + pause
    else
        -- Flow Lock answered, but not with a decision (a request it
        -- refused, say): not a reason to let the request through.
        txn:set_var("txn.flowlock", "error")
    end
end

core.register_action("flowlock", { "http-req" }, check, 1)
