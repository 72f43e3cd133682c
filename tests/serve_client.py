#!/usr/bin/env python3
"""serve_client.py PORT KEY: the checks of `gemma3 serve` from a client's side, with Python's
standard library only (Debian has no python3-openai). tests/test_serve.c starts the server
(--parallel 4 --queue 40 --timeout 1.5 --max-body 64 --api-key KEY) and runs this; the exit
code is the verdict, and every failed check is printed."""
import base64
import http.client
import json
import socket
import struct
import sys
import threading
import time

PORT, KEY = int(sys.argv[1]), sys.argv[2]
AUTH = {"Authorization": "Bearer " + KEY, "Content-Type": "application/json"}
failures, count = [], 0


def check(cond, what):
    global count
    count += 1
    if not cond:
        failures.append(what)
        print("check failed:", what, file=sys.stderr)
    return cond


def request(method, path, body=None, headers=AUTH, raw=None, timeout=60):
    """(status, headers, parsed JSON or text) of one request on a fresh connection."""
    c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=timeout)
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    c.request(method, path, body=data, headers=headers)
    r = c.getresponse()
    text = r.read()
    c.close()
    try:
        return r.status, dict(r.getheaders()), json.loads(text)
    except ValueError:
        return r.status, dict(r.getheaders()), text


def post(path, body, **kw):
    return request("POST", path, body, **kw)


def stream(path, body):
    """The data payloads of a server-sent-event response, in order."""
    c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=60)
    c.request("POST", path, body=json.dumps(body).encode(), headers=AUTH)
    r = c.getresponse()
    check(r.status == 200 and r.getheader("Content-Type", "").startswith("text/event-stream"), f"stream status {r.status}")
    events = []
    for line in r.read().decode().split("\n"):
        if line.startswith("data: "):
            events.append(line[6:])
    c.close()
    return events


def is_error(st, j, code=None):
    ok = isinstance(j, dict) and isinstance(j.get("error"), dict) and isinstance(j["error"].get("message"), str) and "type" in j["error"]
    return ok and 400 <= st < 500 and (code is None or st == code)


def chat(content, **kw):
    body = {"model": "tiny", "messages": [{"role": "user", "content": content}], "max_tokens": 8}
    body.update(kw)
    return post("/v1/chat/completions", body)


def text_of(j):
    return j["choices"][0]["message"]["content"]


# ---- basics, authentication ----
st, h, j = request("GET", "/health", headers={})
check(st == 200 and j.get("status") == "ok", f"/health without a key: {st} {j}")
st, h, j = request("GET", "/v1/models")
check(st == 200 and j["data"][0]["object"] == "model", f"/v1/models: {st} {j}")
st, h, j = request("GET", "/v1/models", headers={})
check(st == 401 and j["error"]["type"] == "authentication_error", f"no key: {st} {j}")
st, h, j = post("/v1/chat/completions", {"messages": []}, headers={"Authorization": "Bearer wrong"})
check(st == 401, f"wrong key: {st}")
st, h, j = request("GET", "/", headers={})
check(st == 200 and b"<html" in j and b"https://" not in j and b"http://" not in j, f"chat page (self-contained): {st}")
st, h, j = request("GET", "/nope")
check(is_error(st, j, 404), f"unknown path: {st} {j}")
st, h, j = request("GET", "/v1/chat/completions")
check(is_error(st, j, 405), f"wrong method: {st} {j}")

# ---- chat, usage ----
st, h, j = chat("Hello there", temperature=0)
check(st == 200 and j["object"] == "chat.completion" and j["choices"][0]["message"]["role"] == "assistant", f"chat: {st} {j}")
u = j["usage"]
check(u["prompt_tokens"] > 3 and 1 <= u["completion_tokens"] <= 8 and u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"], f"usage {u}")
check(j["choices"][0]["finish_reason"] in ("stop", "length"), "finish_reason")
st2, _, j2 = chat("Hello there", temperature=0)
check(text_of(j2) == text_of(j), "greedy is deterministic")

# sampled answers vary with the seed and repeat with it
s1 = text_of(chat("Tell me a story", temperature=1, seed=11, max_tokens=16)[2])
s1b = text_of(chat("Tell me a story", temperature=1, seed=11, max_tokens=16)[2])
check(s1 == s1b, f"same seed, same text: {s1!r} {s1b!r}")

# ---- streaming reassembles to the non-streamed text ----
for kind in ("chat", "completion"):
    if kind == "chat":
        path, body = "/v1/chat/completions", {"messages": [{"role": "user", "content": "Write a poem"}]}
    else:
        path, body = "/v1/completions", {"prompt": "Once upon a time"}
    body.update(max_tokens=20, temperature=1, seed=7)
    st, _, full = post(path, body)
    whole = full["choices"][0]["message"]["content"] if kind == "chat" else full["choices"][0]["text"]
    ev = stream(path, dict(body, stream=True, stream_options={"include_usage": True}))
    check(ev and ev[-1] == "[DONE]", f"{kind}: stream ends with [DONE]")
    chunks = [json.loads(e) for e in ev[:-1]]
    pieces, finish, usage = [], None, None
    for c in chunks:
        if c.get("usage"):
            usage = c["usage"]
        for ch in c["choices"]:
            if kind == "chat":
                check(c["object"] == "chat.completion.chunk", "chunk object")
                pieces.append(ch["delta"].get("content") or "")
            else:
                pieces.append(ch["text"])
            finish = ch["finish_reason"] or finish
    check("".join(pieces) == whole, f"{kind}: stream {''.join(pieces)!r} != {whole!r}")
    check(finish == full["choices"][0]["finish_reason"], f"{kind}: finish {finish}")
    same = ("prompt_tokens", "completion_tokens", "total_tokens")
    check(usage and all(usage[k] == full["usage"][k] for k in same), f"{kind}: usage {usage} vs {full['usage']}")
    check(len(chunks) >= 3, f"{kind}: {len(chunks)} chunks: tokens streamed one by one")

# ---- stop strings ----
base = text_of(chat("Give me a list", temperature=1, seed=3, max_tokens=24)[2])
cut = next((i for i in range(2, len(base) - 2) if base[i:i + 2].strip() and base.find(base[i:i + 2]) == i), None)
if check(cut is not None, f"an answer to cut: {base!r}"):
    stop = base[cut:cut + 2]
    st, _, j = chat("Give me a list", temperature=1, seed=3, max_tokens=24, stop=[stop, "zzzzqqq"])
    check(text_of(j) == base[:cut] and j["choices"][0]["finish_reason"] == "stop", f"stop {stop!r}: {text_of(j)!r} vs {base[:cut]!r}")
    ev = stream("/v1/chat/completions", {"messages": [{"role": "user", "content": "Give me a list"}], "temperature": 1, "seed": 3,
                                         "max_tokens": 24, "stop": stop, "stream": True})
    got = "".join((json.loads(e)["choices"][0]["delta"].get("content") or "") for e in ev[:-1] if json.loads(e)["choices"])
    check(got == base[:cut], f"streamed stop: {got!r} vs {base[:cut]!r}")

# ---- n > 1: choice i is the request with seed + i ----
st, _, j = chat("Pick a number", temperature=1, seed=100, n=3, max_tokens=10)
check(st == 200 and [c["index"] for c in j["choices"]] == [0, 1, 2], f"n=3: {st}")
for i in range(3):
    one = text_of(chat("Pick a number", temperature=1, seed=100 + i, max_tokens=10)[2])
    check(j["choices"][i]["message"]["content"] == one, f"n=3 choice {i}: {j['choices'][i]['message']['content']!r} vs {one!r}")
check(3 <= j["usage"]["completion_tokens"] <= 30, f"n=3 usage {j['usage']}")

# ---- logprobs ----
st, _, j = chat("Hi", temperature=0, logprobs=True, top_logprobs=3, max_tokens=4)
lp = j["choices"][0]["logprobs"]["content"]
check(len(lp) == j["usage"]["completion_tokens"] and all(len(t["top_logprobs"]) == 3 and t["logprob"] <= 0 for t in lp), f"logprobs {lp}")
check(all(abs(t["logprob"] - t["top_logprobs"][0]["logprob"]) < 1e-6 for t in lp), "greedy picks the top logprob")

# ---- completions: prompt as ids, the activations' last logits agree with greedy ----
st, _, tk = post("/tokenize", {"content": "The quick brown fox", "add_special": True})
ids = tk["tokens"]
check(st == 200 and ids[0] == 2, f"tokenize {tk}")
st, _, dt = post("/detokenize", {"tokens": ids[1:]})
check(dt.get("content") == "The quick brown fox", f"detokenize {dt}")
st, _, j = post("/v1/completions", {"prompt": ids, "max_tokens": 1, "temperature": 0, "logprobs": 1})
st2, _, j2 = post("/v1/completions", {"prompt": "The quick brown fox", "max_tokens": 1, "temperature": 0})
check(st == 200 and j["choices"][0]["text"] == j2["choices"][0]["text"], "string prompt = its ids")
st, _, a = post("/v1/activations", {"prompt": ids, "hooks": ["blocks.0.hook_resid_post", "logits"]})
if check(st == 200, f"activations {st} {a if st != 200 else ''}"):
    acts = {x["name"]: x for x in a["activations"]}
    r = acts["blocks.0.hook_resid_post"]
    check(r["shape"] == [len(ids), 32] and len(base64.b64decode(r["data"])) == len(ids) * 32 * 4, f"resid shape {r['shape']}")
    lg = acts["logits"]
    V = lg["shape"][1]
    raw = base64.b64decode(lg["data"])
    last = struct.unpack("<%df" % V, raw[(len(ids) - 1) * V * 4:len(ids) * V * 4])
    best = max(range(V), key=lambda k: (last[k], -k))
    st, _, one = post("/v1/completions", {"prompt": ids, "max_tokens": 1, "temperature": 0})
    st, _, tok = post("/tokenize", {"content": one["choices"][0]["text"]})
    check(tok["tokens"] == [best], f"argmax of the recorded logits {best} vs greedy {tok['tokens']}")
# the prefix cache: a prompt that extends one just read is read from where the cache ends
longp = ids + [1000 + k for k in range(40)]
st, _, j = post("/v1/completions", {"prompt": longp, "max_tokens": 1, "temperature": 0})
st, _, j = post("/v1/completions", {"prompt": longp + [5000, 5001], "max_tokens": 1, "temperature": 0})
check(j["usage"]["prompt_tokens_details"]["cached_tokens"] == len(longp), f"prefix cache: {j['usage']}")
st, _, a = post("/v1/activations", {"prompt": "hi", "hooks": ["blocks.99.nothing"]})
check(is_error(st, a, 400), f"bad hook {st}")

# ---- tools: the conversation's calls and results reach the prompt; a call-free answer stays text ----
tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
                                           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
msgs = [{"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function",
                                                               "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "18 C, sunny"}]
st, _, t = post("/apply-template", {"messages": msgs, "tools": tools})
p = t.get("prompt", "")
check(st == 200 and '[get_weather(city="Paris")]' in p and "```tool_output\n18 C, sunny\n```" in p and '"name": "get_weather"' in p, f"template: {p!r}")
st, _, j = chat("x", tools=tools, messages=msgs, temperature=0)
m = j["choices"][0]["message"]
check(st == 200 and (m.get("tool_calls") or isinstance(m["content"], str)), f"chat with tools {st} {j}")
st, _, j = chat("x", tools=[{"type": "function"}])
check(is_error(st, j, 400), "malformed tools")
st, _, j = chat("x", tool_choice="required")
check(is_error(st, j, 400), "tool_choice without tools")

# ---- 32 clients at once get exactly their solo texts ----
prompts = [f"Question number {i}: what is {i} times {i + 3}?" for i in range(32)]
def body_of(i, greedy):
    b = {"messages": [{"role": "user", "content": prompts[i]}], "max_tokens": 6 + i % 5}
    b.update(temperature=0) if greedy else b.update(temperature=1, seed=1000 + i)
    return b
for greedy in (True, False):
    solo = [text_of(post("/v1/chat/completions", body_of(i, greedy))[2]) for i in range(32)]
    got = [None] * 32
    def worker(i):
        st, _, j = post("/v1/chat/completions", body_of(i, greedy))
        got[i] = text_of(j) if st == 200 else f"status {st}"
    th = [threading.Thread(target=worker, args=(i,)) for i in range(32)]
    [t.start() for t in th]
    [t.join() for t in th]
    bad = [i for i in range(32) if got[i] != solo[i]]
    check(not bad, f"{'greedy' if greedy else 'seeded'}: clients {bad} differ from their solo texts: {[(got[i], solo[i]) for i in bad[:3]]}")
check(len(set(solo)) > 8, "the seeded texts differ between clients (else the check above says little)")

# ---- a full server answers 503 with Retry-After ----
res = []
def big(seed):
    res.append(post("/v1/chat/completions", {"messages": [{"role": "user", "content": "Go"}], "n": 16, "max_tokens": 40, "temperature": 1, "seed": seed}))
th = [threading.Thread(target=big, args=(s,)) for s in range(4)]
[t.start() for t in th]
[t.join() for t in th]
codes = sorted(r[0] for r in res)
busy = [r for r in res if r[0] == 503]
check(200 in codes and busy and "Retry-After" in busy[0][1] and busy[0][2]["error"]["message"], f"queue full: {codes}")

# ---- hostile input: each a 4xx with an error object, and the server goes on ----
def raw_exchange(data, wait_close=True, timeout=10):
    s = socket.create_connection(("127.0.0.1", PORT), timeout=timeout)
    s.sendall(data)
    out = b""
    try:
        while True:
            b = s.recv(65536)
            if not b:
                break
            out += b
            if not wait_close and b"\r\n\r\n" in out:
                break
    except socket.timeout:
        pass
    s.close()
    return out

def status_of(resp):
    try:
        return int(resp.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return 0

def body_json(resp):
    try:
        return json.loads(resp.split(b"\r\n\r\n", 1)[1])
    except (IndexError, ValueError):
        return None

cases = [
    ("malformed JSON", b'{"messages": [', 400),
    ("not an object", b'[1, 2]', 400),
    ("deep nesting", b'{"messages": ' + b"[" * 5000 + b"]" * 5000 + b"}", 400),
    ("invalid UTF-8", b'{"messages": [{"role": "user", "content": "\xff\xfe bad"}]}', 400),
    ("messages not a list", json.dumps({"messages": "hi"}).encode(), 400),
    ("missing messages", json.dumps({"model": "x"}).encode(), 400),
    ("missing content", json.dumps({"messages": [{"role": "user"}]}).encode(), 400),
    ("bad role", json.dumps({"messages": [{"role": "wizard", "content": "x"}]}).encode(), 400),
    ("max_tokens string", json.dumps({"messages": [{"role": "user", "content": "x"}], "max_tokens": "5"}).encode(), 400),
    ("max_tokens huge", json.dumps({"messages": [{"role": "user", "content": "x"}], "max_tokens": 10 ** 12}).encode(), 400),
    ("max_tokens zero", json.dumps({"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}).encode(), 400),
    ("max_tokens beyond the context", json.dumps({"messages": [{"role": "user", "content": "x"}], "max_tokens": 100000}).encode(), 400),
    ("temperature string", json.dumps({"messages": [{"role": "user", "content": "x"}], "temperature": "hot"}).encode(), 400),
    ("temperature negative", json.dumps({"messages": [{"role": "user", "content": "x"}], "temperature": -1}).encode(), 400),
    ("n zero", json.dumps({"messages": [{"role": "user", "content": "x"}], "n": 0}).encode(), 400),
    ("n float", json.dumps({"messages": [{"role": "user", "content": "x"}], "n": 1.5}).encode(), 400),
    ("stop number", json.dumps({"messages": [{"role": "user", "content": "x"}], "stop": 5}).encode(), 400),
    ("stream string", json.dumps({"messages": [{"role": "user", "content": "x"}], "stream": "yes"}).encode(), 400),
    ("token id out of range", json.dumps({"prompt": [2, 999999999], "max_tokens": 2}).encode(), 400, "/v1/completions"),
    ("token id negative", json.dumps({"prompt": [-1], "max_tokens": 2}).encode(), 400, "/v1/completions"),
    ("detokenize out of range", json.dumps({"tokens": [1, 262144 * 4]}).encode(), 400, "/detokenize"),
    ("image part", json.dumps({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}).encode(), 400),
    ("top_logprobs too many", json.dumps({"messages": [{"role": "user", "content": "x"}], "logprobs": True, "top_logprobs": 99}).encode(), 400),
    ("empty body", b"", 400),
]
for case in cases:
    name, data, want = case[:3]
    path = case[3] if len(case) > 3 else "/v1/chat/completions"
    st, _, j = post(path, None, raw=data)
    check(is_error(st, j, want), f"{name}: {st} {j}")

# huge body: refused from its head, before it is read
r = raw_exchange(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + KEY.encode() +
                 b"\r\nContent-Length: 100000000\r\n\r\n" + b"x" * 100000)
check(status_of(r) == 413 and body_json(r) and "error" in body_json(r), f"huge body: {r[:80]!r}")
# a body over --max-body 64 KiB, sent whole: 413, and the answer arrives
st, _, j = post("/v1/chat/completions", None, raw=b'{"messages": "' + b"a" * 70000 + b'"}')
check(is_error(st, j, 413), f"body over the limit: {st}")
# malformed HTTP
for name, data, want in [("garbage", b"HELLO\r\n\r\n", 400), ("bad version", b"GET / HTTP/2.0\r\n\r\n", 505),
                         ("header folding", b"GET /health HTTP/1.1\r\nA: b\r\n c\r\n\r\n", 400),
                         ("two lengths", b"POST /tokenize HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}", 400),
                         ("chunked request", b"POST /tokenize HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 411),
                         ("huge head", b"GET /health HTTP/1.1\r\n" + b"X-A: " + b"b" * 40000 + b"\r\n\r\n", 431)]:
    r = raw_exchange(data)
    check(status_of(r) == want and (body_json(r) or {}).get("error"), f"{name}: {r[:60]!r}")

# keep-alive: several requests on one connection; HTTP/1.0 gets its answer and a close
c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=30)
for i in range(3):
    c.request("GET", "/health")
    rr = c.getresponse()
    check(rr.status == 200 and json.loads(rr.read())["status"] == "ok", "keep-alive request")
c.close()
r = raw_exchange(b"GET /health HTTP/1.0\r\n\r\n")
check(status_of(r) == 200 and b"Connection: close" in r, "HTTP/1.0")
# Expect: 100-continue (curl sends it for large bodies)
s = socket.create_connection(("127.0.0.1", PORT), timeout=10)
body = json.dumps({"content": "hello"}).encode()
s.sendall(b"POST /tokenize HTTP/1.1\r\nAuthorization: Bearer " + KEY.encode() + b"\r\nExpect: 100-continue\r\nContent-Length: " +
          str(len(body)).encode() + b"\r\n\r\n")
first = s.recv(1000)
s.sendall(body)
time.sleep(0.2)
rest = s.recv(10000)
s.close()
check(first.startswith(b"HTTP/1.1 100") and status_of(rest) == 200, f"100-continue: {first!r} {rest[:40]!r}")

# slow-loris: a request that never ends gets 408 after --timeout, and others are served meanwhile
s = socket.create_connection(("127.0.0.1", PORT), timeout=10)
s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
t0 = time.time()
st, _, j = request("GET", "/health")
check(st == 200 and time.time() - t0 < 1.0, "served beside a slow-loris")
s.sendall(b"X-Slow: 1\r\n")
out = b""
try:
    while True:
        b = s.recv(1000)
        if not b:
            break
        out += b
except OSError:
    pass
s.close()
check(status_of(out) == 408 and time.time() - t0 < 8, f"slow-loris: {out[:40]!r} after {time.time() - t0:.1f} s")

# a client that vanishes mid-stream frees its slot; the server goes on
s = socket.create_connection(("127.0.0.1", PORT), timeout=10)
body = json.dumps({"messages": [{"role": "user", "content": "Long story"}], "max_tokens": 200, "stream": True, "temperature": 1}).encode()
s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nAuthorization: Bearer " + KEY.encode() + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
got = s.recv(4096)
check(status_of(got) == 200, "stream started")
s.close()
for _ in range(100):
    st, _, j = request("GET", "/health")
    if j.get("sequences") == 0:
        break
    time.sleep(0.05)
check(j.get("sequences") == 0, f"the vanished client's sequence is freed: {j}")
st, _, j = chat("still there?", temperature=0)
check(st == 200, "serving after all of that")

print(f"{count - len(failures)} of {count} client checks passed")
sys.exit(1 if failures else 0)
