#!/usr/bin/env python3
"""serve_load.py URL CONCURRENCY REQUESTS MAX_TOKENS [KEY]: a load generator for OpenAI-style
servers (gemma3 serve, llama.cpp's llama-server), standard library only. CONCURRENCY clients
each send streamed /v1/chat/completions requests (different prompts, greedy) until REQUESTS
have been made in all; every content chunk is timed. Prints one JSON line: tokens/s summed
over the run, time to first token (p50, p99) and inter-token latency (p50, p99), in ms.
tok_s counts content chunks (a server that holds back a token's incomplete UTF-8 sends fewer
chunks than tokens); usage_tok_s counts the completion tokens of the servers' own usage records
(stream_options.include_usage), where every server sends them: the two should agree."""
import http.client
import json
import sys
import threading
import time
import urllib.parse

url, conc, total, max_tokens = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
key = sys.argv[5] if len(sys.argv) > 5 else None
u = urllib.parse.urlparse(url)
lock = threading.Lock()
ttft, gaps, tokens, errors, usage = [], [], [0], [0], [0]
next_req = [0]
WORDS = "river stone cloud lamp violin harbor meadow copper lantern orbit garden pepper canyon".split()


def prompt(i):
    return "Tell a short story about " + " and ".join(WORDS[(i + k) % len(WORDS)] for k in range(1 + i % 3)) + f" (story {i})."


def client():
    while True:
        with lock:
            if next_req[0] >= total:
                break
            i = next_req[0]
            next_req[0] += 1
        body = {"model": "m", "messages": [{"role": "user", "content": prompt(i)}], "max_tokens": max_tokens, "temperature": 0,
                "stream": True, "ignore_eos": True, "stream_options": {"include_usage": True}}
        h = {"Content-Type": "application/json"}
        if key:
            h["Authorization"] = "Bearer " + key
        t0 = time.perf_counter()
        c = http.client.HTTPConnection(u.hostname, u.port, timeout=600)  # one per request: the same for every server
        try:
            c.request("POST", "/v1/chat/completions", body=json.dumps(body), headers=h)
            r = c.getresponse()
            if r.status != 200:
                r.read()
                with lock:
                    errors[0] += 1
                continue
            last, n, my_gaps, first, used = None, 0, [], None, None
            buf = b""
            while True:
                chunk = r.read1(65536) if hasattr(r, "read1") else r.read(1)
                if not chunk:
                    break
                buf += chunk
                while b"\n\n" in buf:
                    ev, buf = buf.split(b"\n\n", 1)
                    if not ev.startswith(b"data: ") or ev[6:] == b"[DONE]":
                        continue
                    j = json.loads(ev[6:])
                    if isinstance(j.get("usage"), dict) and "completion_tokens" in j["usage"]:
                        used = j["usage"]["completion_tokens"]
                    for ch in j.get("choices", []):
                        if (ch.get("delta") or {}).get("content"):
                            now = time.perf_counter()
                            if first is None:
                                first = now - t0
                            else:
                                my_gaps.append(now - last)
                            last = now
                            n += 1
            with lock:
                if first is not None:
                    ttft.append(first)
                gaps.extend(my_gaps)
                tokens[0] += n
                usage[0] = None if usage[0] is None or used is None else usage[0] + used
        except (OSError, http.client.HTTPException):
            with lock:
                errors[0] += 1
        c.close()


def pct(v, p):
    if not v:
        return float("nan")
    v = sorted(v)
    return v[min(len(v) - 1, int(p / 100 * len(v)))]


t0 = time.perf_counter()
th = [threading.Thread(target=client) for _ in range(conc)]
[t.start() for t in th]
[t.join() for t in th]
wall = time.perf_counter() - t0
print(json.dumps({"concurrency": conc, "requests": total, "tokens": tokens[0], "errors": errors[0], "wall_s": round(wall, 2),
                  "tok_s": round(tokens[0] / wall, 2), "usage_tok_s": None if usage[0] is None else round(usage[0] / wall, 2),
                  "ttft_p50_ms": round(pct(ttft, 50) * 1e3, 1), "ttft_p99_ms": round(pct(ttft, 99) * 1e3, 1),
                  "itl_p50_ms": round(pct(gaps, 50) * 1e3, 1), "itl_p99_ms": round(pct(gaps, 99) * 1e3, 1)}))
