#!/usr/bin/env python3
"""benchmarks/http_static.py — zk-serve side by side with nginx on static files.

    http_static.py --zk-serve PATH [--workers N] [--duration S] [--connections C]
                   [--threads T] [--rounds R] [--json FILE]

Generates a sample directory (1 KiB, 64 KiB, 1 MiB files of random bytes),
starts zk-serve and an nginx configured the same way (private config and
prefix in a temp dir, sendfile on, tcp_nopush on, access log off, the same
worker count, keep-alive), loads each file on each server with wrk
(keep-alive, --latency) in one run, alternating which server goes first
each round, and prints a side-by-side table: requests/s, MB/s and P99
latency, with zk-serve/nginx ratios (> 1 means zk-serve is better; for P99
the ratio is nginx/zk-serve). Stops both servers. Exits 1 if any response
was not 2xx or a server failed.

Standard library only; needs nginx (Debian: nginx-light) and wrk."""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

SIZES = [("1k.bin", 1024), ("64k.bin", 64 * 1024), ("1m.bin", 1024 * 1024)]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port, proc, timeout=10):
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            return False
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def nginx_conf(tmp, root, port, workers):
    body = os.path.join(tmp, "client_body")
    os.makedirs(body, exist_ok=True)
    user = "user root;\n" if os.geteuid() == 0 else ""
    return f"""{user}worker_processes {workers};
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 65;
    keepalive_requests 100000000;
    open_file_cache off;
    client_body_temp_path {body};
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{port} reuseport backlog=4096;
        root {root};
    }}
}}
"""


def parse_wrk(out):
    def to_ms(v, unit):
        return float(v) * {"us": 1e-3, "ms": 1.0, "s": 1000.0}[unit]

    def to_mb(v, unit):
        return float(v) * {"B": 1e-6, "KB": 1024 / 1e6, "MB": 1024 ** 2 / 1e6,
                           "GB": 1024 ** 3 / 1e6}[unit]

    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    tr = re.search(r"Transfer/sec:\s+([\d.]+)(B|KB|MB|GB)", out)
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    if not (rps and tr and p99):
        raise RuntimeError("cannot parse wrk output:\n" + out[-500:])
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errs = re.search(r"Socket errors: (.*)", out)
    return {"rps": float(rps.group(1)), "mbps": to_mb(tr.group(1), tr.group(2)),
            "p99_ms": to_ms(p99.group(1), p99.group(2)),
            "non2xx": int(non2xx.group(1)) if non2xx else 0,
            "socket_errors": errs.group(1) if errs else ""}


def run_wrk(url, args):
    cmd = ["wrk", "-t%d" % args.threads, "-c%d" % args.connections, "-d%ds" % args.duration,
           "--latency", url]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.duration + 60).stdout
    return parse_wrk(out)


def ratio(a, b):
    return a / b if b else float("nan")


# ---- hook for benchmarks/runner.py ----------------------------------------------------

_fixture = {}


def _sample_dir():
    if "root" not in _fixture:
        tmp = tempfile.mkdtemp(prefix="zk-http-bench-")
        os.chmod(tmp, 0o755)
        root = os.path.join(tmp, "www")
        os.makedirs(root)
        os.chmod(root, 0o755)
        for name, size in SIZES:
            with open(os.path.join(root, name), "wb") as f:
                f.write(os.urandom(size))
            os.chmod(os.path.join(root, name), 0o644)
        _fixture["tmp"], _fixture["root"] = tmp, root
        import atexit
        atexit.register(shutil.rmtree, tmp, True)
    return _fixture["tmp"], _fixture["root"]


def bench_runner(suite, fname, threads, failed_exc, unsupported_exc):
    """For benchmarks/runner.py: returns run(impl, w, rnd) for file fname,
    impl "zokio" (zk-serve from build/, built if missing) or "nginx"; the
    figures are requests/s, MB/s and P99 (us) from one wrk run, after a
    one-second warm-up."""
    def run(impl, w, rnd):
        build, duration = suite.a.build, suite.a.duration or 2
        nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
        if not shutil.which("wrk") or (impl == "nginx" and not nginx):
            raise unsupported_exc("needs wrk and nginx (Debian: wrk nginx-light)")
        tmp, root = _sample_dir()
        port = free_port()
        if impl == "nginx":
            run_dir = tempfile.mkdtemp(dir=tmp)
            conf = os.path.join(run_dir, "nginx.conf")
            with open(conf, "w") as f:
                f.write(nginx_conf(run_dir, root, port, w))
            cmd = [nginx, "-c", conf, "-p", run_dir, "-e", os.path.join(run_dir, "err.log")]
        else:
            exe = os.path.join(build, "zk-serve")
            if not os.path.exists(exe):
                subprocess.run(["ninja", "-C", build, "zk-serve"], capture_output=True)
            cmd = [exe, root, "--port", str(port), "--bind", "127.0.0.1", "--workers", str(w)]
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            if not wait_port(port, p):
                raise failed_exc("%s did not start" % impl)
            url = "http://127.0.0.1:%d/%s" % (port, fname)
            subprocess.run(["wrk", "-t%d" % threads, "-c50", "-d1s", url], capture_output=True,
                           timeout=60)
            out = subprocess.run(["wrk", "-t%d" % threads, "-c50", "-d%ds" % max(1, round(duration)),
                                  "--latency", url], capture_output=True, text=True,
                                 timeout=duration + 60).stdout
            try:
                r = parse_wrk(out)
            except RuntimeError as e:
                raise failed_exc(str(e))
            if r["non2xx"]:
                raise failed_exc("%d non-2xx responses" % r["non2xx"])
        finally:
            p.send_signal(signal.SIGTERM if impl == "zokio" else signal.SIGQUIT)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        return {"req_per_sec": (r["rps"], "req/s"), "bandwidth": (r["mbps"] / 1.048576, "MiB/s"),
                "p99_latency": (r["p99_ms"] * 1000.0, "us")}
    return run


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--zk-serve", required=True)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--duration", type=int, default=3)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--json", default=None, help="append one JSON line per figure here")
    args = ap.parse_args()
    for tool in ("nginx", "wrk"):
        if not shutil.which(tool) and not os.path.exists("/usr/sbin/" + tool):
            sys.exit("http_static: %s is not installed" % tool)
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"

    tmp = tempfile.mkdtemp(prefix="zk-http-static-")
    os.chmod(tmp, 0o755)
    root = os.path.join(tmp, "www")
    os.makedirs(root)
    os.chmod(root, 0o755)
    for name, size in SIZES:
        with open(os.path.join(root, name), "wb") as f:
            f.write(os.urandom(size))
        os.chmod(os.path.join(root, name), 0o644)

    zport, nport = free_port(), free_port()
    conf = os.path.join(tmp, "nginx.conf")
    with open(conf, "w") as f:
        f.write(nginx_conf(tmp, root, nport, args.workers))
    procs = {}
    failed = False
    try:
        procs["zk-serve"] = subprocess.Popen(
            [args.zk_serve, root, "--port", str(zport), "--bind", "127.0.0.1",
             "--workers", str(args.workers)], stdout=subprocess.PIPE, text=True)
        startup = procs["zk-serve"].stdout.readline().strip()
        procs["nginx"] = subprocess.Popen([nginx, "-c", conf, "-p", tmp, "-e",
                                           os.path.join(tmp, "nginx-error.log")],
                                          stderr=subprocess.PIPE, text=True)
        ports = {"zk-serve": zport, "nginx": nport}
        for name, p in procs.items():
            if not wait_port(ports[name], p):
                err = ""
                if name == "nginx" and p.stderr:
                    p.kill()
                    err = p.stderr.read()
                sys.exit("http_static: %s did not start %s" % (name, err))
        nv = subprocess.run([nginx, "-v"], capture_output=True, text=True).stderr.strip()
        print("== %s" % startup)
        print("== %s on 127.0.0.1:%d, %d worker(s), sendfile on" % (nv, nport, args.workers))
        print("== wrk -t%d -c%d -d%ds --latency, %d round(s), keep-alive" %
              (args.threads, args.connections, args.duration, args.rounds))
        # Warm-up: page cache, nginx's and our first connections.
        for name in procs:
            for fname, _ in SIZES:
                subprocess.run(["wrk", "-t1", "-c4", "-d1s",
                                "http://127.0.0.1:%d/%s" % (ports[name], fname)],
                               capture_output=True, timeout=30)
        res = {}
        order = ["zk-serve", "nginx"]
        for rnd in range(args.rounds):
            for fname, _ in SIZES:
                for name in (order if rnd % 2 == 0 else order[::-1]):
                    r = run_wrk("http://127.0.0.1:%d/%s" % (ports[name], fname), args)
                    res.setdefault((fname, name), []).append(r)
                    if r["non2xx"] or r["socket_errors"]:
                        print("!! %s %s: %d non-2xx, socket errors: %s" %
                              (name, fname, r["non2xx"], r["socket_errors"] or "none"))
                        failed = True
        print()
        print("| file | zk-serve req/s | nginx req/s | ratio | zk-serve MB/s | nginx MB/s | ratio "
              "| zk-serve P99 | nginx P99 | ratio |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for fname, _ in SIZES:
            z = {k: statistics.median(r[k] for r in res[(fname, "zk-serve")])
                 for k in ("rps", "mbps", "p99_ms")}
            n = {k: statistics.median(r[k] for r in res[(fname, "nginx")])
                 for k in ("rps", "mbps", "p99_ms")}
            print("| %s | %.0f | %.0f | %.2fx | %.1f | %.1f | %.2fx | %.2f ms | %.2f ms | %.2fx |" %
                  (fname, z["rps"], n["rps"], ratio(z["rps"], n["rps"]), z["mbps"], n["mbps"],
                   ratio(z["mbps"], n["mbps"]), z["p99_ms"], n["p99_ms"],
                   ratio(n["p99_ms"], z["p99_ms"])))
            if args.json:
                with open(args.json, "a") as f:
                    for name, v in (("zk-serve", z), ("nginx", n)):
                        f.write(json.dumps({"bench": "http_static_" + fname.split(".")[0],
                                            "impl": name, "workers": args.workers, **v}) + "\n")
        print()
        print("ratios: zk-serve/nginx for req/s and MB/s, nginx/zk-serve for P99; "
              "> 1 means zk-serve is better")
    finally:
        for name, p in procs.items():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM if name == "zk-serve" else signal.SIGQUIT)
        for name, p in procs.items():
            try:
                rc = p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                rc = "killed"
            if name == "zk-serve" and rc != 0:
                print("!! zk-serve exited with %s" % rc)
                failed = True
        shutil.rmtree(tmp, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
