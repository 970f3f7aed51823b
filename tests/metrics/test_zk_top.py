#!/usr/bin/env python3
"""tests/metrics/test_zk_top.py — zk-top against a live Zokio process.

    test_zk_top.py json ZK_SERVE ZK_TOP   zk-top --json / --dump on a busy zk-serve
    test_zk_top.py tmux ZK_SERVE ZK_TOP   the terminal UI in a real terminal (tmux),
                                          read back from the pane

The process under test is zk-serve (the static file server), started with
ZK_METRICS_SOCK so the runtime serves its metrics socket; real HTTP requests
over loopback give it work. Exits 0 on success, 1 on a failed check, 77
(skip) when tmux is not installed for the tmux mode. Standard library only.
"""
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)


def start_server(zk_serve, tmp):
    docroot = os.path.join(tmp, "www")
    os.mkdir(docroot)
    with open(os.path.join(docroot, "hello.txt"), "w") as f:
        f.write("hello from zokio\n" * 64)
    sock = os.path.join(tmp, "metrics.sock")
    env = dict(os.environ, ZK_METRICS_SOCK=sock)
    # stderr to a file: a full pipe nobody reads would stall the server.
    err = open(os.path.join(tmp, "zk-serve.err"), "w")
    proc = subprocess.Popen([zk_serve, docroot, "--port", "0", "--bind", "127.0.0.1",
                             "--workers", "2"], env=env, stdout=subprocess.PIPE,
                            stderr=err, text=True)
    err.close()
    line = proc.stdout.readline()
    if "http://127.0.0.1:" not in line:
        proc.kill()
        proc.wait()
        with open(os.path.join(tmp, "zk-serve.err")) as f:
            fail("zk-serve did not start: %r %s" % (line, f.read()))
    port = int(line.split("http://127.0.0.1:")[1].split("/")[0])
    # The socket is bound before the runtime runs its first task.
    deadline = time.monotonic() + 10
    while not os.path.exists(sock):
        if time.monotonic() >= deadline:
            proc.kill()
            proc.wait()
            fail("metrics socket %s never appeared" % sock)
        time.sleep(0.01)
    return proc, port, sock


def stop_server(proc):
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        fail("zk-serve did not exit on SIGINT")
    # 0: a clean shutdown (under ASan, also no leak).
    if proc.returncode != 0:
        with open(os.path.join(os.path.dirname(proc.args[1]), "zk-serve.err")) as f:
            fail("zk-serve exited %d: %s" % (proc.returncode, f.read()[-4000:]))


def requests(port, n):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    for _ in range(n):
        conn.request("GET", "/hello.txt")
        r = conn.getresponse()
        body = r.read()
        check(r.status == 200 and body.startswith(b"hello from zokio"), "bad response")
    conn.close()


def zk_top(zk_top_bin, *args):
    out = subprocess.run([zk_top_bin, *args], capture_output=True, text=True, timeout=20)
    check(out.returncode == 0, "zk-top %s exited %d: %s" % (args, out.returncode, out.stderr))
    return json.loads(out.stdout)


def mode_json(zk_serve, zk_top_bin, tmp):
    proc, port, sock = start_server(zk_serve, tmp)
    try:
        before = zk_top(zk_top_bin, "--json", sock)
        requests(port, 200)
        after = zk_top(zk_top_bin, "--json", sock)
        check(after["enabled"] is True, "metrics not enabled")
        check(after["workers"] == 2, "workers %r" % after["workers"])
        check(after["backend"] in ("io_uring", "epoll", "faulty"), after["backend"])
        check(len(after["per_worker"]) == 2, "per_worker entries")
        t0, t1 = before["total"], after["total"]
        # 200 requests on one keep-alive connection: at least a receive and
        # a send each, each completed by the backend, run by some task.
        check(t1["completions"] - t0["completions"] >= 400,
              "completions %d -> %d" % (t0["completions"], t1["completions"]))
        check(t1["submissions"] - t0["submissions"] >= 400, "submissions")
        check(t1["polls"] - t0["polls"] >= 200, "polls")
        check(t1["completions"] <= t1["submissions"] + 64, "more completions than submissions")
        for key in ("polls", "submissions", "completions", "parks"):
            s = sum(w[key] for w in after["per_worker"])
            check(s == t1[key], "%s: workers sum %d, total %d" % (key, s, t1[key]))
        io = t1["io_ns"]
        check(io, "no I/O latency samples after 400 operations")
        for name, h in io.items():
            check(h["count"] > 0 and h["min"] <= h["p50"] <= h["p99"] <= h["max"],
                  "io %s histogram not ordered: %r" % (name, h))
            check(h["max"] < 60e9, "io %s latency %d ns is not plausible" % (name, h["max"]))
        check(after["uptime_ns"] > before["uptime_ns"], "uptime did not advance")
        check(after["live_tasks"] >= 2, "live tasks %d" % after["live_tasks"])
        dump = zk_top(zk_top_bin, "--dump", sock)
        tasks = dump["tasks"]
        check(len(tasks) >= 2, "dump lists %d tasks" % len(tasks))
        accepts = [t for t in tasks if t["wait"] and t["wait"].get("op") == "accept"]
        check(accepts, "no task waits in accept: %r" % tasks)
        check(all(t["state"] in ("runnable", "running", "suspended", "done") for t in tasks),
              "bad state")
    finally:
        stop_server(proc)
    check(not os.path.exists(sock), "socket left behind after shutdown")


def tmux(*args, check_rc=True):
    r = subprocess.run(["tmux", *args], capture_output=True, text=True, timeout=20)
    if check_rc and r.returncode != 0:
        fail("tmux %s: %s" % (args, r.stderr))
    return r.stdout


def wait_pane(session, pred, what, timeout=15):
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = tmux("capture-pane", "-p", "-t", session)
        if pred(text):
            return text
        time.sleep(0.1)
    fail("pane never showed %s; last pane:\n%s" % (what, text))


def mode_tmux(zk_serve, zk_top_bin, tmp):
    if not shutil.which("tmux"):
        print("tmux not installed: skipping")
        sys.exit(77)
    proc, port, sock = start_server(zk_serve, tmp)
    session = "zktop%d" % os.getpid()
    os.environ["TMUX_TMPDIR"] = tmp
    try:
        tmux("new-session", "-d", "-s", session, "-x", "180", "-y", "40",
             "%s --interval 200 %s" % (zk_top_bin, sock))
        text = wait_pane(session, lambda t: "polls/s" in t and "all" in t, "the metrics view")
        check("zk-top" in text and "workers" in text, "header missing:\n" + text)
        check("task run per resume" in text and "scheduling delay" in text,
              "latency table missing:\n" + text)
        # Traffic shows up as a nonzero rate on the "all" row within a refresh.
        def busy(t):
            rows = [l for l in t.splitlines() if l.strip().startswith("all")]
            return rows and any(int(x) > 0 for x in rows[0].split()[1:2])
        for _ in range(20):
            requests(port, 100)
            text = tmux("capture-pane", "-p", "-t", session)
            if busy(text):
                break
        check(busy(text), "polls/s stayed 0 under load:\n" + text)
        check("io " in text, "no io latency line under load:\n" + text)
        tmux("send-keys", "-t", session, "d")
        text = wait_pane(session, lambda t: "task dump" in t, "the task dump")
        check("accept" in text and "suspended" in text, "dump has no accept wait:\n" + text)
        tmux("send-keys", "-t", session, "d")
        wait_pane(session, lambda t: "polls/s" in t, "the metrics view again")
        tmux("send-keys", "-t", session, "q")
        # q ends zk-top, which ends the session's only window.
        deadline = time.monotonic() + 10
        while subprocess.run(["tmux", "has-session", "-t", session],
                             capture_output=True).returncode == 0:
            check(time.monotonic() < deadline, "zk-top did not quit on q")
            time.sleep(0.1)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
        subprocess.run(["tmux", "kill-server"], capture_output=True,
                       env=dict(os.environ, TMUX_TMPDIR=tmp))
        stop_server(proc)


def main():
    if len(sys.argv) != 4 or sys.argv[1] not in ("json", "tmux"):
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    mode, zk_serve, zk_top_bin = sys.argv[1:]
    tmp = tempfile.mkdtemp(prefix="zk-top-")
    try:
        (mode_json if mode == "json" else mode_tmux)(zk_serve, zk_top_bin, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("ok")


if __name__ == "__main__":
    main()
