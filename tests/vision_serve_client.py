#!/usr/bin/env python3
"""vision_serve_client.py PORT IMAGE1 IMAGE2 WANT1 WANT2: image parts in `gemma3 serve`'s chat
messages, from a client's side (standard library only). tests/test_vision_serve.c starts the
server over a small random vision model and passes two PNG files and the texts `gemma3
generate --chat --image` answers with; the exit code is the verdict."""
import base64
import http.client
import json
import sys

PORT, IMG1, IMG2, WANT1, WANT2 = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
failures, count = [], 0


def check(cond, what):
    global count
    count += 1
    if not cond:
        failures.append(what)
        print("check failed:", what, file=sys.stderr)
    return cond


def post(body):
    c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=120)
    c.request("POST", "/v1/chat/completions", body=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    r = c.getresponse()
    text = r.read()
    c.close()
    try:
        return r.status, json.loads(text)
    except ValueError:
        return r.status, text


def data_url(path, mime="image/png"):
    with open(path, "rb") as f:
        return "data:%s;base64,%s" % (mime, base64.b64encode(f.read()).decode())


def ask(url, text="Describe it.", **kw):
    parts = [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": text}]
    body = {"messages": [{"role": "user", "content": parts}], "max_tokens": 4, "temperature": 0}
    body.update(kw)
    return post(body)


def answer(resp):
    return resp[1]["choices"][0]["message"]["content"] if resp[0] == 200 else None


# the answers equal generate --chat --image's, and a request with another image between two
# with the first does not change the first's (no cached prefix read with other pixels)
a1 = ask(data_url(IMG1))
check(a1[0] == 200, "image request: %s %s" % (a1[0], a1[1]))
check(answer(a1) == WANT1, "answer %r, generate --chat --image %r" % (answer(a1), WANT1))
a2 = ask(data_url(IMG2))
check(answer(a2) == WANT2, "second image: answer %r, generate %r" % (answer(a2), WANT2))
a3 = ask(data_url(IMG1))
check(answer(a3) == WANT1, "first image again: %r (want %r)" % (answer(a3), WANT1))
check(a1[0] == 200 and a1[1]["usage"]["prompt_tokens"] > 4, "usage counts the image's tokens: %s" % (a1[1].get("usage") if a1[0] == 200 else a1))
# n = 2 choices, each in its own slot with the image
a4 = ask(data_url(IMG1), n=2)
check(a4[0] == 200 and [c["message"]["content"] for c in a4[1]["choices"]] == [WANT1, WANT1], "n=2: %s" % (a4,))
# the image as a bare string and as the only part (the text in another message)
s, r = post({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": data_url(IMG1)}, {"type": "text", "text": "Describe it."}]}],
             "max_tokens": 4, "temperature": 0})
check(s == 200 and answer((s, r)) == WANT1, "image_url as a string: %s %s" % (s, r))

# bad images: 400 with a message that says what is wrong
def refused(resp, what):
    s, r = resp
    msg = r.get("error", {}).get("message", "") if isinstance(r, dict) else ""
    check(s == 400 and what in msg, "want 400 with %r, got %s %s" % (what, s, msg or r))

refused(ask("data:image/png;base64,@@@@"), "bad character")
refused(ask("data:image/gif;base64," + base64.b64encode(b"GIF89a\x01\x00\x01\x00").decode()), "unsupported image format")
with open(IMG1, "rb") as f:
    png = f.read()
refused(ask("data:image/png;base64," + base64.b64encode(png[: len(png) // 2]).decode()), "truncated")
refused(ask("https://example.com/cat.png"), "fetches nothing")
refused(ask("data:image/png,rawbytes"), "base64")
refused(post({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}), "image_url")
refused(post({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": data_url(IMG1)}}] * 9}]}), "more than 8 images")
refused(ask(data_url(IMG1), text="<start_of_image> and this"), "marker")
check(post({"messages": [{"role": "user", "content": "still fine?"}], "max_tokens": 2})[0] == 200, "a text request after the refusals")

print("%d checks, %d failed" % (count, len(failures)))
sys.exit(1 if failures else 0)
