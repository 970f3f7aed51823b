#!/usr/bin/env python3
"""tests/http/test_zk_serve.py — zk-serve driven by real clients.

Usage: test_zk_serve.py ZK_SERVE [GROUP...]   (groups: curl, python, load; default all)

Starts zk-serve on a fresh directory (port 0, the startup line says which
port it got), then:
  curl    status codes, headers, ranges, 304s, redirects, and every path
          traversal shape (.., %2e%2e, %2f, NUL, absolute-form, symlinks
          leaving DIR) — nothing outside DIR may ever be served;
  python  http.client for keep-alive and pipelining (responses in order),
          malformed and smuggling requests sent one byte at a time, a
          slowloris client, many concurrent keep-alive connections each
          checking its own bytes, and graceful exit on SIGTERM;
  load    wrk and h2load --h1 (when installed) with every response 2xx.
The backend is whatever ZK_BACKEND says (meson's epoll setup sets it).
Python standard library only. Exits 0 if every check passed, and skips
(exit 77) a group whose client is not installed."""

import hashlib
import http.client
import os
import re
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

FAILS = []
CHECKS = 0


def check(cond, what):
    global CHECKS
    CHECKS += 1
    if not cond:
        FAILS.append(what)
        print("FAIL:", what, flush=True)


class Server:
    def __init__(self, exe, root, *extra, env=None):
        self.proc = subprocess.Popen(
            [exe, root, "--port", "0", "--bind", "127.0.0.1", "--workers", "2", *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=dict(os.environ, **(env or {})))
        line = self.proc.stdout.readline()
        m = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        if not m:
            self.proc.kill()
            raise SystemExit("zk-serve did not start: %r %s" % (line, self.proc.stderr.read()))
        self.port = int(m.group(1))
        self.url = "http://127.0.0.1:%d" % self.port

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = "hung"
        check(rc == 0, "zk-serve exits 0 on SIGTERM (got %s)" % rc)
        if rc != 0 and rc != "hung":
            # A sanitizer report, say: show it.
            print(self.proc.stderr.read()[-6000:], flush=True)


def make_tree(base):
    root = os.path.join(base, "www")
    os.makedirs(os.path.join(root, "docs"))
    os.makedirs(os.path.join(root, "empty"))
    with open(os.path.join(root, "index.html"), "w") as f:
        f.write("<h1>home</h1>\n")
    with open(os.path.join(root, "docs", "index.html"), "w") as f:
        f.write("<h1>docs</h1>\n")
    with open(os.path.join(root, "style.css"), "w") as f:
        f.write("body{}\n")
    with open(os.path.join(root, "a b.txt"), "w") as f:
        f.write("space\n")
    data = bytes((i * 7 + (i >> 8)) & 0xFF for i in range(300000))
    with open(os.path.join(root, "big.bin"), "wb") as f:
        f.write(data)
    with open(os.path.join(base, "secret.txt"), "w") as f:
        f.write("TOP SECRET\n")
    os.symlink(os.path.join(base, "secret.txt"), os.path.join(root, "leak"))
    os.symlink(base, os.path.join(root, "updir"))
    os.symlink("style.css", os.path.join(root, "alias.css"))
    return root, data


# ---- curl ---------------------------------------------------------------------

def curl(srv, path, *args, raw_path=False):
    """Returns (status, headers dict (lower-case), body bytes)."""
    cmd = ["curl", "-s", "-S", "-i", "--max-time", "10"]
    if raw_path:
        cmd.append("--path-as-is")
    cmd += list(args) + [srv.url + path]
    out = subprocess.run(cmd, capture_output=True, timeout=20).stdout
    head, _, body = out.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    m = re.match(r"HTTP/1\.1 (\d+)", lines[0]) if lines else None
    status = int(m.group(1)) if m else -1
    hdrs = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    return status, hdrs, body


def group_curl(srv, data):
    st, h, b = curl(srv, "/")
    check(st == 200 and b == b"<h1>home</h1>\n", "GET / serves index.html")
    check(h.get("content-type", "").startswith("text/html"), "index.html is text/html")
    check("date" in h and h.get("server") == "zk-serve", "Date and Server headers")
    st, h, b = curl(srv, "/style.css")
    check(st == 200 and h.get("content-type", "").startswith("text/css"), "css MIME type")
    st, h, b = curl(srv, "/a%20b.txt")
    check(st == 200 and b == b"space\n", "percent-encoded space")
    st, h, b = curl(srv, "/big.bin")
    check(st == 200 and b == data, "300 KB file arrives whole (sendfile path)")
    check(h.get("content-type") == "application/octet-stream", "unknown extension MIME")
    check(h.get("accept-ranges") == "bytes", "Accept-Ranges")
    st, h, b = curl(srv, "/docs")
    check(st == 301 and h.get("location") == "/docs/", "directory without slash redirects")
    st, h, b = curl(srv, "/docs/")
    check(st == 200 and b == b"<h1>docs</h1>\n", "directory index")
    st, h, b = curl(srv, "/empty/")
    check(st == 404, "directory without index.html is 404 (got %d)" % st)
    st, h, b = curl(srv, "/missing.html")
    check(st == 404, "missing file 404")
    st, h, b = curl(srv, "/alias.css")
    check(st == 200 and b == b"body{}\n", "symlink inside DIR is served")
    st, h, b = curl(srv, "/style.css", "-X", "POST", "-d", "x")
    check(st == 405 and "GET" in h.get("allow", ""), "POST is 405 with Allow")
    st, h, b = curl(srv, "/big.bin", "-I")
    check(st == 200 and h.get("content-length") == str(len(data)), "HEAD reports the length")

    # Validators.
    st, h, b = curl(srv, "/style.css")
    etag, lastmod = h.get("etag"), h.get("last-modified")
    check(bool(etag) and bool(lastmod), "ETag and Last-Modified present")
    st, h, b = curl(srv, "/style.css", "-H", "If-None-Match: " + etag)
    check(st == 304 and b == b"", "If-None-Match match is 304 without body")
    check(h.get("etag") == etag, "304 repeats the ETag")
    check("content-length" not in h, "304 has no Content-Length")
    st, h, b = curl(srv, "/style.css", "-H", 'If-None-Match: "other", ' + etag)
    check(st == 304, "If-None-Match list containing ours is 304")
    st, h, b = curl(srv, "/style.css", "-H", 'If-None-Match: "other"')
    check(st == 200, "If-None-Match other is 200")
    st, h, b = curl(srv, "/style.css", "-H", "If-Modified-Since: " + lastmod)
    check(st == 304, "If-Modified-Since = Last-Modified is 304")
    st, h, b = curl(srv, "/style.css", "-H", "If-Modified-Since: Mon, 01 Jan 2001 00:00:00 GMT")
    check(st == 200, "older If-Modified-Since is 200")

    # Ranges.
    st, h, b = curl(srv, "/big.bin", "-r", "100-199")
    check(st == 206 and b == data[100:200], "range 100-199")
    check(h.get("content-range") == "bytes 100-199/%d" % len(data), "Content-Range")
    st, h, b = curl(srv, "/big.bin", "-r", "299990-")
    check(st == 206 and b == data[299990:], "open-ended range")
    st, h, b = curl(srv, "/big.bin", "-r", "-5")
    check(st == 206 and b == data[-5:], "suffix range")
    st, h, b = curl(srv, "/big.bin", "-r", "0-199999")
    check(st == 206 and b == data[:200000], "large range (sendfile with offset)")
    st, h, b = curl(srv, "/big.bin", "-r", "400000-500000")
    check(st == 416 and h.get("content-range") == "bytes */%d" % len(data), "416 past the end")
    st, h, b = curl(srv, "/big.bin", "-r", "0-1,5-6")
    check(st == 200 and b == data, "several ranges: whole file")
    st, h, b = curl(srv, "/big.bin", "-r", "10-20", "-H", 'If-Range: "stale"')
    check(st == 200 and b == data, "If-Range mismatch: whole file")

    # Traversal: nothing outside DIR.
    bad = [
        ("/../secret.txt", True), ("/../../../../etc/passwd", True),
        ("/%2e%2e/secret.txt", False), ("/%2E%2e/%2e%2E/etc/passwd", False),
        ("/docs/%2e%2e/%2e%2e/secret.txt", False), ("/..%2fsecret.txt", False),
        ("/%2f..%2f..%2fetc%2fpasswd", False), ("/docs%2f..%2f..%2fsecret.txt", False),
        ("/style.css%00.html", False), ("/%00", False), ("/leak", False),
        ("/updir/secret.txt", False), ("/updir/www/index.html", False),
        ("//etc/passwd", True), ("/%252e%252e/secret.txt", False),
    ]
    for path, raw in bad:
        st, h, b = curl(srv, path, raw_path=raw)
        check(b"TOP SECRET" not in b and b"root:" not in b and st in (400, 403, 404),
              "traversal %s refused (got %d)" % (path, st))


# ---- python: raw sockets and http.client ---------------------------------------------

def raw(srv):
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


class _Keep:
    """One buffered reader per socket, shared by the HTTPResponse objects
    that parse consecutive (pipelined) responses from it; their close() of
    the reader is ignored."""

    def __init__(self, f):
        self.f = f

    def __getattr__(self, name):
        return getattr(self.f, name)

    def close(self):
        pass


class _Sock:
    def __init__(self, f):
        self.f = f

    def makefile(self, *a, **k):
        return self.f


_readers = {}


def recv_status(s, head=False):
    """Reads the next response on s with http.client; returns (status,
    body, response)."""
    if s not in _readers:
        _readers[s] = _Sock(_Keep(s.makefile("rb")))
    r = http.client.HTTPResponse(_readers[s], method="HEAD" if head else "GET")
    r.begin()
    return r.status, r.read(), r


def bytewise(srv, payload):
    s = raw(srv)
    try:
        for i in range(len(payload)):
            s.sendall(payload[i:i + 1])
        st, b, _ = recv_status(s)
    except (ConnectionError, http.client.HTTPException):
        st = -1
    s.close()
    return st


def group_python(srv, data, exe, root):
    # Keep-alive with http.client.
    c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    for _ in range(5):
        c.request("GET", "/style.css")
        r = c.getresponse()
        check(r.status == 200 and r.read() == b"body{}\n", "keep-alive request")
    c.request("HEAD", "/big.bin")
    r = c.getresponse()
    check(r.status == 200 and r.read() == b"" and
          r.getheader("Content-Length") == str(len(data)), "HEAD over keep-alive")
    c.request("GET", "/big.bin")
    r = c.getresponse()
    check(r.read() == data, "big file after HEAD on the same connection")
    c.close()

    # Pipelining: 30 requests in one write, answers in order.
    s = raw(srv)
    names = ["/style.css", "/index.html", "/missing", "/docs/", "/a%20b.txt"] * 6
    s.sendall(b"".join(b"GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % n.encode() for n in names))
    expect = {"/style.css": (200, b"body{}\n"), "/index.html": (200, b"<h1>home</h1>\n"),
              "/missing": (404, None), "/docs/": (200, b"<h1>docs</h1>\n"),
              "/a%20b.txt": (200, b"space\n")}
    ok = True
    for n in names:
        st, b, _ = recv_status(s)
        want = expect[n]
        ok = ok and st == want[0] and (want[1] is None or b == want[1])
    check(ok, "30 pipelined requests answered in order")
    s.close()

    # Byte by byte: a valid request, then malformed and smuggling ones.
    check(bytewise(srv, b"GET /style.css HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n") == 200,
          "valid request sent byte by byte")
    cases = [
        (b"GET / HTTP/1.1\nHost: t\r\n\r\n", 400, "bare LF"),
        (b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400, "CL+TE"),
        (b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", 400, "two CL"),
        (b"GET / HTTP/1.1\r\nHost : t\r\n\r\n", 400, "space before colon"),
        (b"GET / HTTP/1.1\r\nHost: t\r\nX: a\r\n folded\r\n\r\n", 400, "obs-fold"),
        (b"GET / HTTP/1.1\r\nHost: t\r\nX: a\x00b\r\n\r\n", 400, "NUL in value"),
        (b"GET / HTTP/1.1\r\n\r\n", 400, "no Host"),
        (b"GET / HTTP/3.0\r\nHost: t\r\n\r\n", 505, "HTTP/3.0"),
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: t\r\n\r\n", 414, "long URI"),
        (b"GET / HTTP/1.1\r\nHost: t\r\nX: " + b"v" * 20000 + b"\r\n\r\n", 431, "huge header"),
        (b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n", 400, "TE not chunked"),
        (b"GET http://evil/etc/passwd HTTP/1.1\r\nHost: t\r\n\r\n", 404, "absolute-form: DIR/etc/passwd"),
        (b"GET http://evil/../secret.txt HTTP/1.1\r\nHost: t\r\n\r\n", 403, "absolute-form with .."),
        (b"GET HTTP://t/style.css HTTP/1.1\r\nHost: t\r\n\r\n", 200, "absolute-form is served"),
        (b"GET * HTTP/1.1\r\nHost: t\r\n\r\n", 400, "asterisk-form for GET"),
    ]
    for payload, want, what in cases:
        if len(payload) > 2000:
            s = raw(srv)
            try:
                s.sendall(payload)
                st, _, _ = recv_status(s)
            except (ConnectionError, http.client.HTTPException):
                st = -1
            s.close()
        else:
            st = bytewise(srv, payload)
        check(st == want, "%s -> %d (got %d)" % (what, want, st))

    # A smuggled request inside a body is never answered.
    s = raw(srv)
    inner = b"GET /index.html HTTP/1.1\r\nHost: t\r\n\r\n"
    s.sendall(b"POST /style.css HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n%s"
              b"GET /a%%20b.txt HTTP/1.1\r\nHost: t\r\n\r\n" % (len(inner), inner))
    st1, _, _ = recv_status(s)
    st2, b2, _ = recv_status(s)
    check(st1 == 405 and st2 == 200 and b2 == b"space\n", "body bytes never parsed as a request")
    s.close()

    # Many concurrent keep-alive connections, each gets its own bytes.
    n = int(os.environ.get("ZK_HTTP_CONNS", "400"))
    sel = selectors.DefaultSelector()
    socks = []
    for i in range(n):
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        s.setblocking(False)
        socks.append(s)
    paths = ["/style.css", "/a%20b.txt", "/index.html"]
    bodies = {"/style.css": b"body{}\n", "/a%20b.txt": b"space\n", "/index.html": b"<h1>home</h1>\n"}
    good = 0
    for rnd in range(2):
        bufs = {}
        for i, s in enumerate(socks):
            p = paths[(i + rnd) % 3]
            s.sendall(b"GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % p.encode())
            bufs[s] = [p, b""]
            sel.register(s, selectors.EVENT_READ)
        pending = len(socks)
        deadline = time.time() + 20
        while pending and time.time() < deadline:
            for key, _ in sel.select(timeout=1):
                s = key.fileobj
                chunk = s.recv(65536)
                ent = bufs[s]
                ent[1] += chunk
                head, sep, body = ent[1].partition(b"\r\n\r\n")
                m = re.search(rb"Content-Length: (\d+)", head)
                if not chunk or (sep and m and len(body) >= int(m.group(1))):
                    sel.unregister(s)
                    pending -= 1
                    if chunk and head.startswith(b"HTTP/1.1 200") and body == bodies[ent[0]]:
                        good += 1
    for s in socks:
        s.close()
    check(good == 2 * n, "%d concurrent keep-alive connections x2 correct (%d/%d)" % (n, good, 2 * n))

    # Slowloris: a head dribbling in is cut off (server started with a
    # short head timeout).
    # (This server opens every file on its opener thread: that path too.)
    slow = Server(exe, root, "--head-timeout-ms", "300", env={"ZK_SERVE_OPEN_THREAD": "1"})
    s = raw(slow)
    cut = False
    t0 = time.time()
    try:
        for b in b"GET / HTTP/1.1\r\nHost: t\r\nX-Slow: " + b"a" * 100:
            s.sendall(bytes([b]))
            time.sleep(0.05)
    except (BrokenPipeError, ConnectionResetError):
        cut = True
    try:
        s.settimeout(10)
        rest = s.recv(4096)
        while rest and b"\r\n\r\n" not in rest:
            more = s.recv(4096)
            if not more:
                break
            rest += more
        cut = cut or rest.startswith(b"HTTP/1.1 408") or rest == b""
    except (ConnectionResetError, socket.timeout):
        cut = cut or False
    s.close()
    check(cut, "slowloris connection closed (408)")
    # A well-behaved client on the same server is unaffected.
    st, h, b = curl(slow, "/style.css")
    check(st == 200 and b == b"body{}\n", "normal client served next to a slowloris")
    st, h, b = curl(slow, "/docs/")
    check(st == 200 and b == b"<h1>docs</h1>\n", "opener thread: directory index")
    for path in ("/leak", "/updir/secret.txt", "/missing"):
        st, h, b = curl(slow, path)
        check(st in (403, 404) and b"TOP SECRET" not in b, "opener thread: %s refused" % path)
    slow.stop()

    # Graceful exit with a transfer in flight: it completes.
    g = Server(exe, root)
    s = raw(g)
    s.sendall(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
    first = s.recv(1)
    g.proc.send_signal(signal.SIGTERM)
    rest = b""
    s.settimeout(10)
    while True:
        chunk = s.recv(1 << 16)
        if not chunk:
            break
        rest += chunk
    full = first + rest
    head, _, body = full.partition(b"\r\n\r\n")
    check(head.startswith(b"HTTP/1.1 200") and body == data,
          "in-flight response finishes on SIGTERM (%d of %d body bytes)" % (len(body), len(data)))
    s.close()
    g.stop()


# ---- load ------------------------------------------------------------------------------

def group_load(srv):
    ran = False
    if shutil.which("wrk"):
        ran = True
        for path in ("/style.css", "/big.bin"):
            out = subprocess.run(["wrk", "-t2", "-c32", "-d2s", srv.url + path],
                                 capture_output=True, text=True, timeout=30).stdout
            m = re.search(r"(\d+) requests in", out)
            check(m and int(m.group(1)) > 0, "wrk made requests to %s" % path)
            check("Non-2xx" not in out, "wrk %s: every response 2xx" % path)
            check("Socket errors" not in out, "wrk %s: no socket errors" % path)
    if shutil.which("h2load"):
        ran = True
        out = subprocess.run(["h2load", "--h1", "-n", "4000", "-c", "40", "-m", "4",
                              srv.url + "/index.html"], capture_output=True, text=True,
                             timeout=60).stdout
        check("4000 succeeded, 0 failed, 0 errored" in out, "h2load --h1: all succeeded")
        check(re.search(r"status codes: 4000 2xx", out) is not None, "h2load --h1: 4000 2xx")
    return ran


def main():
    exe = os.path.abspath(sys.argv[1])
    groups = sys.argv[2:] or ["curl", "python", "load"]
    base = tempfile.mkdtemp(prefix="zk-serve-test-")
    skipped = 0
    try:
        root, data = make_tree(base)
        srv = Server(exe, root)
        try:
            for g in groups:
                if g == "curl":
                    if shutil.which("curl"):
                        group_curl(srv, data)
                    else:
                        skipped += 1
                elif g == "python":
                    group_python(srv, data, exe, root)
                elif g == "load":
                    if not group_load(srv):
                        skipped += 1
        finally:
            srv.stop()
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print("%d checks, %d failed" % (CHECKS, len(FAILS)))
    if FAILS:
        return 1
    if skipped == len(groups):
        return 77
    return 0


if __name__ == "__main__":
    sys.exit(main())
