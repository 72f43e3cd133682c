#!/usr/bin/env python3
"""serve_page.py PORT KEY SCREENSHOT.png: the chat page of `gemma3 serve` in headless Chromium
(Debian's chromium), driven over the DevTools protocol with the standard library only (a
minimal WebSocket client): loads /, enters the API key, types a message and presses Enter,
waits for the streamed answer, checks it is the answer the API gives for the same request,
and saves a screenshot. Exit code: 0 pass, 1 fail, 77 no chromium (skipped)."""
import base64
import http.client
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time

PORT, KEY, SHOT = int(sys.argv[1]), sys.argv[2], sys.argv[3]
browser = shutil.which("chromium") or shutil.which("chromium-browser")
if not browser:
    print("skipped: no chromium (scripts/deps.sh installs it)")
    sys.exit(77)


class WS:
    """A WebSocket client, just enough for DevTools: text frames, masked, no extensions."""

    def __init__(self, url):
        host, rest = url[len("ws://"):].split("/", 1)
        h, p = host.split(":")
        self.s = socket.create_connection((h, int(p)), timeout=30)
        key = base64.b64encode(os.urandom(16)).decode()
        self.s.sendall((f"GET /{rest} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += self.s.recv(1)
        if b" 101 " not in head.split(b"\r\n")[0]:
            raise RuntimeError(head.decode(errors="replace"))
        self.next_id = 0

    def _recv_exact(self, n):
        b = b""
        while len(b) < n:
            c = self.s.recv(n - len(b))
            if not c:
                raise EOFError
            b += c
        return b

    def send(self, obj):
        data = json.dumps(obj).encode()
        hdr = bytes([0x81])
        n = len(data)
        hdr += bytes([0x80 | n]) if n < 126 else (bytes([0x80 | 126]) + struct.pack(">H", n) if n < 65536 else bytes([0x80 | 127]) + struct.pack(">Q", n))
        mask = os.urandom(4)
        self.s.sendall(hdr + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def recv(self):
        msg = b""
        while True:
            b0, b1 = self._recv_exact(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._recv_exact(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._recv_exact(8))[0]
            msg += self._recv_exact(n)
            if b0 & 0x80:
                return json.loads(msg)

    def call(self, method, **params):
        self.next_id += 1
        self.send({"id": self.next_id, "method": method, "params": params})
        while True:
            m = self.recv()
            if m.get("id") == self.next_id:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m.get("result", {})

    def js(self, expr):
        r = self.call("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True)
        return r.get("result", {}).get("value")


failures = []
def check(cond, what):
    if not cond:
        failures.append(what)
        print("check failed:", what, file=sys.stderr)


profile = tempfile.mkdtemp(prefix="g3chrome")
proc = subprocess.Popen([browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
                         "--remote-debugging-port=0", f"--user-data-dir={profile}", "--window-size=1100,760", "about:blank"],
                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
try:
    ws_url = None
    t0 = time.time()
    while time.time() - t0 < 60 and not ws_url:
        line = proc.stderr.readline()
        if not line and proc.poll() is not None:
            break
        if "DevTools listening on " in line:
            ws_url = line.split("DevTools listening on ", 1)[1].strip()
    if not ws_url:
        print("chromium did not start", file=sys.stderr)
        sys.exit(1)
    dport = int(ws_url.split(":")[2].split("/")[0])
    c = http.client.HTTPConnection("127.0.0.1", dport, timeout=30)
    c.request("GET", "/json/list")
    pages = [t for t in json.loads(c.getresponse().read()) if t["type"] == "page"]
    ws = WS(pages[0]["webSocketDebuggerUrl"])
    ws.call("Page.enable")
    ws.call("Page.navigate", url=f"http://127.0.0.1:{PORT}/")
    for _ in range(100):
        if ws.js("document.readyState") == "complete" and ws.js("!!document.getElementById('input')"):
            break
        time.sleep(0.1)
    check(ws.js("document.title") == "gemma3 chat", "the page loaded")
    # settings: the key, greedy, a short answer
    ws.js(f"""(() => {{ const set = (id, v) => {{ const e = document.getElementById(id); e.value = v; e.dispatchEvent(new Event('change')); }};
              set('key', {json.dumps(KEY)}); set('temperature', '1'); set('max_tokens', '24'); set('seed', '1'); }})()""")
    ws.js("document.getElementById('input').focus()")
    message = "Hello from the browser"
    ws.call("Input.insertText", text=message)
    for kind in ("keyDown", "keyUp"):
        ws.call("Input.dispatchKeyEvent", type=kind, key="Enter", code="Enter", windowsVirtualKeyCode=13, nativeVirtualKeyCode=13,
                **({"text": "\r"} if kind == "keyDown" else {}))
    answer = None
    for _ in range(300):
        st = ws.js("(() => { const a = document.querySelector('.assistant'); return a ? [a.textContent, a.dataset.done || ''] : null; })()")
        if st and st[1] == "1":
            answer = st[0]
            break
        time.sleep(0.1)
    check(answer is not None, "no finished answer on the page")
    user = ws.js("(() => { const u = document.querySelector('.user'); return u ? u.textContent : null; })()")
    check(user == message, f"the typed message shows: {user!r}")
    meta = ws.js("(() => { const m = document.querySelector('.meta'); return m ? m.textContent : ''; })()") or ""
    check("tok/s" in meta, f"tokens/s shown: {meta!r}")
    # the same request through the API
    api = http.client.HTTPConnection("127.0.0.1", PORT, timeout=60)
    api.request("POST", "/v1/chat/completions", body=json.dumps({"messages": [{"role": "user", "content": message}], "temperature": 1,
                                                                 "max_tokens": 24, "seed": 1, "top_p": 0.95, "top_k": 64}),
                headers={"Authorization": "Bearer " + KEY, "Content-Type": "application/json"})
    want = json.loads(api.getresponse().read())["choices"][0]["message"]["content"]
    check(answer == want, f"the page's answer {answer!r} is the API's {want!r}")
    shot = ws.call("Page.captureScreenshot", format="png")
    with open(SHOT, "wb") as f:
        f.write(base64.b64decode(shot["data"]))
finally:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
    shutil.rmtree(profile, ignore_errors=True)
print("page checks:", "all passed" if not failures else f"{len(failures)} failed")
sys.exit(1 if failures else 0)
