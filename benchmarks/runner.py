#!/usr/bin/env python3
"""benchmarks/runner.py — runs the side-by-side benchmarks and reports them.

benchmarks/run installs the dependencies, builds every program, then hands
over to this script with the build directory. For each benchmark and worker
count it runs every implementation once per round, alternating which goes
first (Zokio, peers... then peers..., Zokio), so that slow drift on a noisy
machine does not always favour the same side. Each figure is written as one
JSON line {"bench","impl","workers","metric","value","unit","round"} to
results/latest.jsonl; the markdown table (median over rounds per side, the
median and the min-max of the per-round ratios) goes to stdout and, with the
date and the machine, to results/latest.md.

Why per-round ratios: both runs of a round are back to back, so load from
elsewhere on a shared machine tends to hit both and cancel out of their ratio,
where it would skew a ratio of two medians taken at different moments.
"""
import argparse
import datetime
import fnmatch
import glob
import json
import math
import os
import platform
import re
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A process that outlives this is a bug (a lost wake-up, a hung server): do
# not hang with it.
PROCESS_TIMEOUT = 120

# The per-process descriptor limit here is 20 000 and cannot be raised, so a
# client process opens at most this many connections.
CONNS_PER_CLIENT = 19000

# Load generator threads (and wrk threads). Two: one client thread cannot keep
# even a one-worker server busy, so with one the figures measure the client.
CLIENT_THREADS = 2

HIGHER, LOWER = "higher", "lower"


class Failed(Exception):
    """A run that produced no figures; the message says why."""


class Unsupported(Exception):
    """The machine cannot run this benchmark (e.g. no O_DIRECT)."""


# ---- helpers ----------------------------------------------------------------

LOG = None


def log(msg):
    if LOG:
        LOG.write(msg + "\n")
        LOG.flush()


def run_cmd(cmd, timeout=PROCESS_TIMEOUT, stdin=None, env=None):
    """Runs cmd, returns its stdout; raises Failed on a non-zero exit."""
    log("$ " + " ".join(cmd))
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           timeout=timeout, stdin=stdin, env=env)
    except subprocess.TimeoutExpired:
        raise Failed("timed out after %d s: %s" % (timeout, " ".join(cmd)))
    log(p.stdout + p.stderr)
    if p.returncode != 0:
        raise Failed("exit %d: %s: %s" % (p.returncode, os.path.basename(cmd[0]),
                                         (p.stderr or p.stdout).strip()[-300:]))
    return p.stdout


def kv(line):
    """'a=1 b=2' -> {'a': '1', 'b': '2'}"""
    return dict(f.split("=", 1) for f in line.split() if "=" in f)


def last_kv_line(out, key):
    for line in reversed(out.splitlines()):
        if line.startswith(key + "="):
            return kv(line)
    raise Failed("no '%s=' line in output: %s" % (key, out.strip()[-300:]))


def thread_switches(pid):
    """{tid: voluntary + involuntary context switches} of every thread."""
    out = {}
    for path in glob.glob("/proc/%d/task/*/status" % pid):
        try:
            with open(path) as f:
                n = 0
                for line in f:
                    if "ctxt_switches" in line:
                        n += int(line.split()[1])
            out[path] = n
        except OSError:
            pass  # the thread exited meanwhile
    return out


def cpu_ns(pid):
    """CPU time used so far by all threads of pid, in ns (schedstat)."""
    total = 0
    for path in glob.glob("/proc/%d/task/*/schedstat" % pid):
        try:
            with open(path) as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass  # the thread exited meanwhile
    return total


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise Failed("no VmRSS for pid %d" % pid)


class Server:
    """A network server process: started, its port read, killed at exit."""

    def __init__(self, cmd):
        self.cmd = cmd

    def __enter__(self):
        log("$ " + " ".join(self.cmd) + " &")
        self.errf = tempfile.TemporaryFile(mode="w+")
        self.p = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=self.errf, text=True)
        deadline = time.monotonic() + 20
        line = ""
        while time.monotonic() < deadline:
            r, _, _ = select.select([self.p.stdout], [], [], 0.5)
            if r:
                line = self.p.stdout.readline()
                break
            if self.p.poll() is not None:
                break
        m = re.match(r"port=(\d+)", line)
        if not m:
            self.stop()
            self.errf.seek(0)
            raise Failed("%s did not start: %s" % (os.path.basename(self.cmd[0]),
                                                   self.errf.read().strip()[-300:]))
        self.port = m.group(1)
        self.pid = self.p.pid
        return self

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(3)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()

    def __exit__(self, *exc):
        died = self.p.poll()
        self.stop()
        self.errf.close()
        if died is not None and exc[0] is None:
            raise Failed("%s exited during the run (status %s)" %
                         (os.path.basename(self.cmd[0]), died))


def median(xs):
    return statistics.median(xs) if xs else None


# ---- the benchmarks ------------------------------------------------------------


class Bench:
    """One benchmark: its implementations, the worker counts it runs at,
    the function that runs one implementation once, and the figures that
    make table rows (metric, unit, which direction is better)."""

    def __init__(self, name, group, impls, run, rows, workers=(1, 2), only_at=None,
                 concurrent=False, fixed_workers=False):
        self.name, self.group, self.impls, self.run = name, group, impls, run
        self.rows = rows
        self.workers = workers
        # Runs at exactly `workers`, whatever --workers selects.
        self.fixed_workers = fixed_workers
        # impl -> the worker counts it runs at (default: all of them;
        # "max": only the largest one selected).
        self.only_at = only_at or {}
        # One measurement window covers every implementation at once (idle).
        self.concurrent = concurrent

    def impls_at(self, w):
        return [i for i in self.impls if w in self.only_at.get(i, (w,))]


class Suite:
    def __init__(self, args):
        self.a = args
        b = args.build
        self.bin = {
            "zk-rt": os.path.join(b, "benchmarks", "zk-rt-bench"),
            "tk-rt": os.path.join(b, "tokio-target", "release", "tokio-rt-bench"),
            "zk-net": os.path.join(b, "benchmarks", "zk-net-server"),
            "zk-http": os.path.join(b, "benchmarks", "zk-http-hello"),
            "zk-dns": os.path.join(b, "benchmarks", "zk-dns-bench"),
            "tk-net": os.path.join(b, "tokio-target", "release", "tokio-net-server"),
            "go-net": os.path.join(b, "go", "go-net-server"),
            "load": os.path.join(b, "benchmarks", "zk-net-load"),
            "zk-fs": os.path.join(b, "benchmarks", "zk-fs-bench"),
            "zk-sqlite": os.path.join(b, "benchmarks", "zk-sqlite-bench"),
        }
        self.notes = []
        self.file = None
        self.file_size = 0
        self.direct_ok = None
        self.cached_seen = []
        self.benches = self.make_benches()

    def note(self, text):
        if text not in self.notes:
            self.notes.append(text)

    # -- runtime (zk-rt-bench / tokio-rt-bench) --------------------------------

    def rt_runner(self, name):
        def run(impl, w, rnd):
            exe = self.bin["zk-rt" if impl == "zokio" else "tk-rt"]
            out = run_cmd([exe, "--workers", str(w), "--iters", str(self.a.iters),
                           "--bench", name])
            f = last_kv_line(out, "bench")
            return {"ops_per_sec": (float(f["ops_per_sec"]), "op/s"),
                    "time_per_iter": (float(f["median_ns"]), "ns")}
        return run

    # -- network -------------------------------------------------------------------

    def server_cmd(self, impl, mode, w, extra=(), zk_exe="zk-net"):
        exe = {"zokio": self.bin[zk_exe], "tokio": self.bin["tk-net"], "go": self.bin["go-net"]}[impl]
        return [exe, "--mode", mode, "--workers", str(w), "--port", "0"] + list(extra)

    def echo_runner(self, conns):
        def run(impl, w, rnd):
            with Server(self.server_cmd(impl, "echo", w)) as s:
                out = run_cmd([self.bin["load"], "echo", "--port", s.port, "--conns", str(conns),
                               "--threads", str(CLIENT_THREADS), "--size", "64",
                               "--warmup-ms", str(self.a.warmup_ms),
                               "--duration-ms", str(int(self.a.duration * 1000)),
                               "--server-pid", str(s.pid)])
            f = last_kv_line(out, "msgs_per_sec")
            if int(f["errors"]):
                raise Failed("%s connections lost" % f["errors"])
            return {"msgs_per_sec": (float(f["msgs_per_sec"]), "msg/s"),
                    "p50_latency": (float(f["p50_us"]), "us"),
                    "p99_latency": (float(f["p99_us"]), "us"),
                    "cpu_per_op": (float(f["server_cpu_us_per_msg"]), "us")}
        return run

    @staticmethod
    def parse_wrk(out):
        def to_us(v, unit):
            return float(v) * {"us": 1, "ms": 1e3, "s": 1e6}[unit]
        m = re.search(r"Requests/sec:\s+([\d.]+)", out)
        p50 = re.search(r"^\s+50%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if not (m and p50 and p99):
            raise Failed("cannot parse wrk output: " + out.strip()[-300:])
        errs = re.search(r"Socket errors: (.*)", out)
        non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        if non2xx:
            raise Failed("%s non-2xx responses" % non2xx.group(1))
        return float(m.group(1)), to_us(*p50.groups()), to_us(*p99.groups()), errs

    def http_runner(self, name="http_hello", zk_exe="zk-net"):
        """wrk against a hello server; Zokio's side is zk-net-server's raw
        responder (zk_exe "zk-net") or lib/http's server ("zk-http")."""
        def run(impl, w, rnd):
            with Server(self.server_cmd(impl, "http", w, zk_exe=zk_exe)) as s:
                url = "http://127.0.0.1:%s/" % s.port
                base = ["wrk", "-t%d" % CLIENT_THREADS, "-c100", "--latency"]
                if not self.a.quick:
                    # Warm-up: fills the servers' pools and caches, as the
                    # echo client's warm-up does (wrk takes whole seconds).
                    run_cmd(base + ["-d1s", url])
                cpu0 = cpu_ns(s.pid)
                out = run_cmd(base + ["-d%ds" % max(1, round(self.a.duration)), url])
                cpu1 = cpu_ns(s.pid)
            rps, p50, p99, errs = self.parse_wrk(out)
            total = re.search(r"(\d+) requests in", out)
            if errs:
                self.note("%s %s W=%d: wrk socket errors: %s" % (name, impl, w, errs.group(1)))
            fig = {"req_per_sec": (rps, "req/s"), "p50_latency": (p50, "us"),
                   "p99_latency": (p99, "us")}
            if total and int(total.group(1)):
                fig["cpu_per_op"] = ((cpu1 - cpu0) / 1e3 / int(total.group(1)), "us")
            return fig
        return run

    def capacity_runner(self, conns, zk_extra=()):
        def run(impl, w, rnd):
            extra = zk_extra if impl == "zokio" else ()
            with Server(self.server_cmd(impl, "echo", w, extra)) as s:
                time.sleep(0.3)
                before = rss_kib(s.pid)
                clients, held, failed, rate = [], 0, 0, 0.0
                left = conns
                try:
                    while left > 0:
                        n = min(left, CONNS_PER_CLIENT)
                        left -= n
                        cmd = [self.bin["load"], "hold", "--port", s.port, "--conns", str(n)]
                        log("$ " + " ".join(cmd) + " &")
                        c = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                             stderr=subprocess.STDOUT, text=True)
                        clients.append(c)
                        r, _, _ = select.select([c.stdout], [], [], 60)
                        line = c.stdout.readline() if r else ""
                        log(line.strip())
                        if not line.startswith("held="):
                            raise Failed("hold client: " + (line.strip() or "no answer in 60 s"))
                        f = kv(line)
                        held += int(f["held"])
                        failed += int(f["failed"])
                        rate = float(f["accept_per_sec"]) if len(clients) == 1 else rate
                    # Every connection has echoed a byte: each is accepted and
                    # served. Let lazily freed memory settle before reading.
                    time.sleep(0.3)
                    after = rss_kib(s.pid)
                finally:
                    for c in clients:
                        c.stdin.close()
                    for c in clients:
                        try:
                            c.wait(10)
                        except subprocess.TimeoutExpired:
                            c.kill()
                            c.wait()
            if failed:
                self.note("conn_capacity_%dk %s W=%d: %d of %d connections not held" %
                          (conns // 1000, impl, w, failed, conns))
            return {"held": (float(held), "conn"),
                    "rss_per_conn": ((after - before) / max(held, 1), "KiB"),
                    "accept_rate": (rate, "conn/s")}
        return run

    def idle_runner(self, extra):
        """Runs every implementation's server at once: idle processes do not
        disturb each other, and one window then serves all of them."""
        def run(impls, w, rnd):
            servers = [Server(self.server_cmd(i, "echo", w, extra)) for i in impls]
            started = []
            try:
                for s in servers:
                    started.append(s.__enter__())
                time.sleep(0.5)  # start-up done: runtimes settle into their wait
                before = [thread_switches(s.pid) for s in started]
                t0 = time.monotonic()
                time.sleep(self.a.idle_seconds)
                after = [thread_switches(s.pid) for s in started]
                dt = time.monotonic() - t0
                res = {}
                for impl, s, b, a in zip(impls, started, before, after):
                    # Threads present at both reads; a thread that appeared
                    # in between counts from zero.
                    n = sum(v - b.get(k, 0) for k, v in a.items())
                    res[impl] = {"wakeups_per_sec": (n / dt, "1/s"),
                                 "threads": (float(len(a)), "threads")}
                return res
            finally:
                for s in started:
                    s.stop()
                    s.errf.close()
        return run

    # -- files -------------------------------------------------------------------------

    def ensure_file(self):
        if self.file:
            return
        tmp = tempfile.gettempdir()
        free = shutil.disk_usage(tmp).free
        size = 256 << 20 if self.a.quick or free < (8 << 30) else 1 << 30
        d = tempfile.mkdtemp(prefix="zk-bench-", dir=tmp)
        self.tmpdir = d
        path = os.path.join(d, "data")
        # Real blocks (not a sparse file, whose reads cost nothing), written
        # once and synced so that the first direct run does not also pay for
        # the writeback.
        block = os.urandom(1 << 20)
        with open(path, "wb") as f:
            for _ in range(size >> 20):
                f.write(block)
            f.flush()
            os.fsync(f.fileno())
        self.file, self.file_size = path, size
        try:
            fs = " ".join(run_cmd(["findmnt", "-n", "-o", "FSTYPE,SOURCE", "-T", d]).split())
        except (Failed, FileNotFoundError):
            fs = "filesystem unknown"
        try:
            run_cmd([self.bin["zk-fs"], "--file", path, "--probe-direct"])
            self.direct_ok = True
        except Failed:
            self.direct_ok = False
        self.note("files: %d MiB file in %s (%s); O_DIRECT %s" % (
            size >> 20, tmp, fs, "supported" if self.direct_ok else "UNSUPPORTED (EINVAL)"))

    def cached_fraction(self):
        """Fraction of the file in the page cache (fincore), or None."""
        try:
            out = run_cmd(["fincore", "--bytes", "--noheadings", "--output", "RES", self.file])
            return int(out.split()[0]) / self.file_size
        except (Failed, ValueError, IndexError, FileNotFoundError):
            return None

    def warm_cache(self):
        frac = self.cached_fraction()
        if frac is not None and frac >= 0.999:
            return frac
        # Read it once: buffered figures are of a fully cached file, which
        # is stable (a partly cached file would measure the disk by chance).
        with open(self.file, "rb") as f:
            while f.read(8 << 20):
                pass
        return self.cached_fraction()

    def file_runner(self, rw, bs, qd, direct, zk_from="task", sync=False):
        """zk_from: who issues Zokio's I/O (task, or foreign: a plain thread
        on its private ring, fs.h); sync: each write followed by fdatasync
        (fio --fdatasync=1). The "pread" impl is plain pread/pwrite from one
        thread (zk-fs-bench --from plain), the foreign-thread baseline."""
        def run(impl, w, rnd):
            self.ensure_file()
            if direct and not self.direct_ok:
                raise Unsupported("O_DIRECT unsupported on this filesystem")
            if not direct:
                frac = self.warm_cache()
                if frac is not None:
                    self.cached_seen.append(frac)
            if rw == "write":
                # Every write run starts with no dirty pages: otherwise the
                # writeback of the previous run throttles this one (by 10x
                # and more), and the figure says which side ran second.
                self.sync_file()
            dur_ms = int(self.a.file_duration * 1000)
            # Writes are sized, not timed: a timed direct write would put
            # gigabytes a run on a shared disk. Direct: one pass over the
            # file. Buffered: four, all in the page cache (the disk sees one
            # pass, at the fsync after the run), since one pass over a cached
            # file is over too soon to measure.
            sized = rw == "write"
            passes = 1 if direct or sync else 4
            if impl in ("zokio", "pread"):
                cmd = [self.bin["zk-fs"], "--file", self.file, "--rw", rw, "--bs", str(bs),
                       "--qd", str(qd), "--workers", str(w),
                       "--from", "plain" if impl == "pread" else zk_from]
                if sync:
                    cmd.append("--sync")
                cmd += (["--passes", str(passes)] if sized else
                        ["--warmup-ms", "300", "--duration-ms", str(dur_ms)])
                if direct:
                    cmd.append("--direct")
                out = run_cmd(cmd)
                if "direct=unsupported" in out:
                    raise Unsupported("O_DIRECT unsupported")
                f = last_kv_line(out, "iops")
                iops = float(f["iops"])
            else:
                engine = impl.split("-", 1)[1]
                if engine == "psync":
                    # A synchronous engine has one I/O in flight per job:
                    # queue depth Q is Q threads.
                    jobs, depth = qd, 1
                else:
                    # One ring per job, as Zokio has one ring per worker.
                    jobs = min(w, qd)
                    depth = qd // jobs
                cmd = ["fio", "--name=zk", "--filename=" + self.file,
                       "--size=%d" % self.file_size, "--rw=" + rw, "--bs=%d" % bs,
                       "--direct=%d" % int(direct), "--ioengine=" + engine,
                       "--iodepth=%d" % depth, "--numjobs=%d" % jobs, "--thread",
                       "--group_reporting", "--norandommap", "--randrepeat=0",
                       # fio drops the file's cached pages before a job by
                       # default; the buffered figures are of a cached file,
                       # as Zokio's are.
                       "--invalidate=0",
                       # Page-aligned buffers, as Zokio's: fio's default
                       # malloc'd buffers are not, and copies from the page
                       # cache into them run at a third of the speed.
                       "--iomem_align=4096", "--output-format=json"]
                if sync:
                    cmd += ["--fdatasync=1"]
                if sized:
                    cmd += ["--io_size=%d" % (passes * self.file_size)]
                else:
                    cmd += ["--time_based", "--ramp_time=300ms", "--runtime=%dms" % dur_ms]
                out = run_cmd(cmd)
                # fio may print notes before the JSON document.
                doc = json.loads(out[out.index("{"):])
                job = doc["jobs"][0]["write" if rw == "write" else "read"]
                iops = float(job["iops"])
            if rw == "write":
                self.sync_file()  # not timed; leaves nothing for the next run
            return {"iops": (iops, "IO/s"), "bandwidth": (iops * bs / 1048576.0, "MiB/s")}
        return run

    def sqlite_runner(self, journal):
        """SQLite through the zokio VFS ("zokio") or SQLite's own unix VFS
        ("sqlite-unix"): zk-sqlite-bench, durable commits then point reads,
        in a fresh directory under the temp dir."""
        def run(impl, w, rnd):
            if not os.path.exists(self.bin["zk-sqlite"]):
                raise Unsupported("zk-sqlite-bench not built (libsqlite3-dev missing)")
            d = tempfile.mkdtemp(prefix="zk-sqlite-")
            try:
                out = run_cmd([self.bin["zk-sqlite"], "--vfs",
                               "zokio" if impl == "zokio" else "unix", "--dir", d,
                               "--journal", journal, "--threads", str(w),
                               "--txns", "100" if self.a.quick else "300",
                               "--reads", "50000"])
            finally:
                shutil.rmtree(d, ignore_errors=True)
            f = last_kv_line(out, "txn_per_sec")
            return {"txn_per_sec": (float(f["txn_per_sec"]), "txn/s"),
                    "reads_per_sec": (float(f["reads_per_sec"]), "reads/s")}
        return run

    def dns_runner(self):
        """zk-dns-bench: cached zk_dns_lookup of "localhost" per second; the
        same process then times glibc getaddrinfo() of the same name on W
        plain threads (no cache: it reads /etc/hosts every call; what
        tokio::net::lookup_host runs). One process measures both, so this
        runs as a concurrent benchmark: one window per round for both."""
        def run(impls, w, rnd):
            out = run_cmd([self.bin["zk-dns"], "--workers", str(w),
                           "--iters", "3" if self.a.quick else "5",
                           "--lookups", "1000" if self.a.quick else "2000"])
            got = {}
            for line in out.splitlines():
                if not line.startswith("bench=dns_cached_lookup"):
                    continue
                f = kv(line)
                impl = "zokio" if f["runtime"] == "zokio" else "getaddrinfo"
                got[impl] = {"ops_per_sec": (float(f["ops_per_sec"]), "op/s")}
            if "zokio" not in got:
                raise Failed("no zokio figure: " + out.strip()[-300:])
            return got
        return run

    def sync_file(self):
        fd = os.open(self.file, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    # -- the list ----------------------------------------------------------------------

    def make_benches(self):
        B = []
        rt_names = ["spawn_many_local", "spawn_many_remote", "chained_spawn", "ping_pong",
                    "yield_many", "sleepers", "timer_churn", "mpsc_1to1", "mpsc_1to1_batch",
                    "mpsc_4to1", "mutex_contended", "notify_pingpong"]
        for n in rt_names:
            B.append(Bench(n, "runtime", ["zokio", "tokio"], self.rt_runner(n),
                           [("ops_per_sec", HIGHER)]))
        net = ["zokio", "tokio", "go"]
        for c in (100, 1000):
            B.append(Bench("tcp_echo_%d" % c, "net", net, self.echo_runner(c),
                           [("msgs_per_sec", HIGHER), ("p99_latency", LOWER),
                            ("cpu_per_op", LOWER)]))
        B.append(Bench("http_hello", "net", net, self.http_runner(),
                       [("req_per_sec", HIGHER), ("p50_latency", LOWER), ("p99_latency", LOWER),
                        ("cpu_per_op", LOWER)]))
        B.append(Bench("http_lib_hello", "net", net, self.http_runner("http_lib_hello", "zk-http"),
                       [("req_per_sec", HIGHER), ("p50_latency", LOWER), ("p99_latency", LOWER),
                        ("cpu_per_op", LOWER)]))
        B.append(Bench("conn_capacity_10k", "net", net, self.capacity_runner(10000),
                       [("held", HIGHER), ("rss_per_conn", LOWER), ("accept_rate", HIGHER)]))
        # 100 000 connections to one server: past the 20 000-descriptor hard
        # limit, so Zokio keeps them as io_uring direct descriptors (--direct,
        # each ring holds 20 000: six workers, for every side). Tokio and Go
        # stop at the limit.
        B.append(Bench("conn_capacity_100k", "net", net,
                       self.capacity_runner(100000, ["--direct"]),
                       [("held", HIGHER), ("rss_per_conn", LOWER), ("accept_rate", HIGHER)],
                       workers=(6,), fixed_workers=True))
        # Static files, zk-serve vs nginx (benchmarks/http_static.py).
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import http_static
        for fname, _ in http_static.SIZES:
            B.append(Bench("http_static_" + fname.split(".")[0], "http", ["zokio", "nginx"],
                           http_static.bench_runner(self, fname, CLIENT_THREADS, Failed,
                                                    Unsupported),
                           [("req_per_sec", HIGHER), ("bandwidth", HIGHER),
                            ("p99_latency", LOWER)]))
        # Cached DNS lookups; the peer is glibc's getaddrinfo (uncached,
        # /etc/hosts every call): a reference for scale, not a like-for-like
        # cache (Tokio has none of its own).
        B.append(Bench("dns_cached", "dns", ["zokio", "getaddrinfo"], self.dns_runner(),
                       [("ops_per_sec", HIGHER)], concurrent=True))
        B.append(Bench("idle", "idle", net, self.idle_runner([]),
                       [("wakeups_per_sec", LOWER)], concurrent=True))
        B.append(Bench("idle_timer", "idle", net, self.idle_runner(["--sleeper"]),
                       [("wakeups_per_sec", LOWER)], concurrent=True))
        fio = ["zokio", "fio-io_uring", "fio-psync"]
        # Order matters: direct writes drop the file's cached pages, so the
        # buffered benchmarks come after them (and re-warm the cache anyway).
        # Queue depth 1 is one task (one fio job) whatever the worker count:
        # those run at one worker only.
        B.append(Bench("seqwrite_1m_direct", "files", fio, self.file_runner("write", 1 << 20, 1, True),
                       [("bandwidth", HIGHER)], workers=(1,)))
        B.append(Bench("seqread_1m_direct", "files", fio, self.file_runner("read", 1 << 20, 1, True),
                       [("bandwidth", HIGHER)], workers=(1,)))
        B.append(Bench("randread_4k_qd1_direct", "files", fio,
                       self.file_runner("randread", 4096, 1, True), [("iops", HIGHER)], workers=(1,)))
        B.append(Bench("randread_4k_qd32_direct", "files", fio,
                       self.file_runner("randread", 4096, 32, True), [("iops", HIGHER)],
                       only_at={"fio-psync": "max"}))
        B.append(Bench("seqwrite_1m_buffered", "files", fio,
                       self.file_runner("write", 1 << 20, 1, False), [("bandwidth", HIGHER)],
                       workers=(1,)))
        B.append(Bench("seqread_1m_buffered", "files", fio,
                       self.file_runner("read", 1 << 20, 1, False), [("bandwidth", HIGHER)],
                       workers=(1,)))
        B.append(Bench("randread_4k_qd1_buffered", "files", fio,
                       self.file_runner("randread", 4096, 1, False), [("iops", HIGHER)],
                       workers=(1,)))
        B.append(Bench("randread_4k_qd32_buffered", "files", fio,
                       self.file_runner("randread", 4096, 32, False), [("iops", HIGHER)],
                       only_at={"fio-psync": "max"}))
        # The storage-engine layer (issue 9): the same I/O from a plain
        # thread outside any runtime (its private ring; queue depth 32 is
        # one zk_fs_batch of 32 after another), against fio and plain
        # pread; and durable sequential writes (write + fdatasync each).
        for journal in ("wal", "delete"):
            B.append(Bench("sqlite_%s" % journal, "sqlite", ["zokio", "sqlite-unix"],
                           self.sqlite_runner(journal),
                           [("txn_per_sec", HIGHER), ("reads_per_sec", HIGHER)]))
        fio_p = ["zokio", "fio-io_uring", "fio-psync", "pread"]
        B.append(Bench("foreign_randread_4k_qd1_buffered", "files", fio_p,
                       self.file_runner("randread", 4096, 1, False, "foreign"), [("iops", HIGHER)],
                       workers=(1,)))
        B.append(Bench("foreign_randread_4k_qd1_direct", "files", fio_p,
                       self.file_runner("randread", 4096, 1, True, "foreign"), [("iops", HIGHER)],
                       workers=(1,)))
        B.append(Bench("foreign_randread_4k_qd32_buffered", "files", fio,
                       self.file_runner("randread", 4096, 32, False, "foreign"),
                       [("iops", HIGHER)], workers=(1,)))
        B.append(Bench("foreign_randread_4k_qd32_direct", "files", fio,
                       self.file_runner("randread", 4096, 32, True, "foreign"),
                       [("iops", HIGHER)], workers=(1,)))
        B.append(Bench("seqwrite_1m_fdatasync", "files", fio_p,
                       self.file_runner("write", 1 << 20, 1, False, "task", True),
                       [("bandwidth", HIGHER)], workers=(1,)))
        B.append(Bench("foreign_seqwrite_1m_fdatasync", "files", fio_p,
                       self.file_runner("write", 1 << 20, 1, False, "foreign", True),
                       [("bandwidth", HIGHER)], workers=(1,)))
        return B

    def selected(self):
        pats = self.a.names + [p for p in (self.a.bench or "").split(",") if p]
        if not pats:
            return self.benches
        out = []
        for b in self.benches:
            if any(fnmatch.fnmatch(b.name, p) or fnmatch.fnmatch(b.group, p) for p in pats):
                out.append(b)
        unknown = [p for p in pats if not any(fnmatch.fnmatch(b.name, p) or
                                              fnmatch.fnmatch(b.group, p) for b in self.benches)]
        if unknown:
            sys.exit("benchmarks/run: no benchmark matches %s (see --list)" % ", ".join(unknown))
        return out


# ---- running ----------------------------------------------------------------------


def run_all(suite, benches, workers, rounds, jsonl):
    """Runs everything; returns {(bench, w): {impl: [per-round figures]}}
    where per-round figures is {metric: (value, unit)} or None (failed), and
    a list of failures."""
    results, failures = {}, []
    for b in benches:
        ws = list(b.workers) if b.fixed_workers else [w for w in workers if w in b.workers]
        for w in ws:
            impls = b.impls_at(w)
            print("   %-26s W=%d  %s" % (b.name, w, " ".join(impls)), file=sys.stderr, flush=True)
            per = results.setdefault((b.name, w), {i: [] for i in impls})
            for rnd in range(rounds):
                order = impls if rnd % 2 == 0 else impls[::-1]
                if b.concurrent:
                    try:
                        got = b.run(order, w, rnd)
                    except Failed as e:
                        failures.append("%s W=%d round %d: %s" % (b.name, w, rnd, e))
                        got = {}
                    for impl in impls:
                        per[impl].append(got.get(impl))
                        emit(jsonl, b.name, impl, w, rnd, got.get(impl))
                    continue
                for impl in order:
                    try:
                        fig = b.run(impl, w, rnd)
                    except Unsupported as e:
                        per[impl].append("unsupported")
                        suite.note("%s: %s" % (b.name, e))
                        continue
                    except Failed as e:
                        failures.append("%s %s W=%d round %d: %s" % (b.name, impl, w, rnd, e))
                        print("      FAILED: %s %s: %s" % (b.name, impl, e), file=sys.stderr)
                        fig = None
                    per[impl].append(fig)
                    emit(jsonl, b.name, impl, w, rnd, fig)
    return results, failures


def emit(jsonl, bench, impl, w, rnd, fig):
    if not fig:
        return
    for metric, (value, unit) in fig.items():
        jsonl.write(json.dumps({"bench": bench, "impl": impl, "workers": w, "metric": metric,
                                "value": round(value, 3), "unit": unit, "round": rnd}) + "\n")
    jsonl.flush()


# ---- reporting ------------------------------------------------------------------


def fmt(value, unit):
    if value is None:
        return "FAILED"
    if unit in ("op/s", "msg/s", "req/s", "IO/s", "conn/s"):
        u = {"op/s": "/s", "msg/s": " msg/s", "req/s": " req/s", "IO/s": " IOPS",
             "conn/s": " conn/s"}[unit]
        if value >= 1e6:
            return "%.2f M%s" % (value / 1e6, u)
        if value >= 1e3:
            return "%.1f K%s" % (value / 1e3, u)
        return "%.0f%s" % (value, u)
    if unit == "us":
        if value >= 1000:
            return "%.2f ms" % (value / 1e3)
        return "%.0f µs" % value if value >= 100 else "%.2f µs" % value
    if unit == "ns":
        return "%.2f ms" % (value / 1e6)
    if unit == "KiB":
        return "%.1f KiB/conn" % value
    if unit == "MiB/s":
        return "%.0f MiB/s" % value
    if unit == "1/s":
        return "%.1f /s" % value
    if unit == "conn":
        return "%.0f" % value
    return "%g %s" % (value, unit)


def fmt_ratio(r):
    if r is None:
        return "-"
    if math.isinf(r):
        return "∞"
    return "%.2f×" % r


PEER_NAMES = {"tokio": "Tokio", "go": "Go", "fio-io_uring": "fio io_uring",
              "fio-psync": "fio psync", "pread": "plain pread",
              "sqlite-unix": "SQLite unix VFS", "getaddrinfo": "glibc getaddrinfo (uncached)"}
METRIC_NAMES = {"ops_per_sec": "ops/s", "msgs_per_sec": "msgs/s", "p50_latency": "P50",
                "p99_latency": "P99", "req_per_sec": "req/s", "held": "held",
                "rss_per_conn": "RSS/conn", "accept_rate": "accept rate", "cpu_per_op": "server CPU/op",
                "wakeups_per_sec": "wake-ups/s", "iops": "IOPS", "bandwidth": "MiB/s",
                "txn_per_sec": "txn/s", "reads_per_sec": "reads/s"}


def round_ratio(z, p, better):
    """Zokio over peer, inverted where lower is better, so > 1 is Zokio ahead."""
    num, den = (z, p) if better == HIGHER else (p, z)
    if den == 0:
        return 1.0 if num == 0 else math.inf
    return num / den


def table(suite, benches, results):
    lines = ["| benchmark | W | metric | Zokio | peer | peer's figure | Zokio/peer | spread |",
             "|---|---|---|---|---|---|---|---|"]
    for b in benches:
        for w in [w for w in b.workers]:
            if (b.name, w) not in results:
                continue
            per = results[(b.name, w)]
            for metric, better in b.rows:
                def values(impl):
                    rs = per.get(impl, [])
                    return [r[metric][0] if isinstance(r, dict) and metric in r else None for r in rs]
                if all(r == "unsupported" for r in per.get("zokio", [])) and per.get("zokio"):
                    lines.append("| %s | %d | %s | unsupported | | | | |" %
                                 (b.name, w, METRIC_NAMES.get(metric, metric)))
                    continue
                zv = values("zokio")
                unit = next((r[metric][1] for r in per.get("zokio", []) if isinstance(r, dict)
                             and metric in r), None)
                zmed = median([v for v in zv if v is not None])
                for peer in [i for i in b.impls if i != "zokio" and i in per]:
                    pv = values(peer)
                    pmed = median([v for v in pv if v is not None])
                    ratios = [round_ratio(z, p, better) for z, p in zip(zv, pv)
                              if z is not None and p is not None]
                    r = median(ratios) if ratios else None
                    spread = ("%s–%s" % (fmt_ratio(min(ratios)), fmt_ratio(max(ratios)))
                              if len(ratios) > 1 else "-")
                    lines.append("| %s | %d | %s | %s | %s | %s | %s | %s |" % (
                        b.name, w, METRIC_NAMES.get(metric, metric), fmt(zmed, unit),
                        PEER_NAMES.get(peer, peer), fmt(pmed, unit), fmt_ratio(r), spread))
    return "\n".join(lines)


def machine():
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            mem = "%.0f GiB RAM" % (int(f.readline().split()[1]) / 1048576)
    except (OSError, ValueError, IndexError):
        pass
    return "%s, %d cores, %s, Linux %s (%s)" % (model, os.cpu_count() or 0, mem,
                                                platform.release(), platform.machine())


def versions(build):
    def first_line(cmd):
        try:
            p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               timeout=10)
            return p.stdout.strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "?"
    tokio = sorted(glob.glob("/usr/share/cargo/registry/tokio-1.*"))
    return "; ".join([
        "tokio " + (os.path.basename(tokio[-1])[6:] if tokio else "?"),
        first_line(["rustc", "--version"]),
        first_line(["go", "version"]),
        first_line(["fio", "--version"]),
        first_line(["wrk", "-v"]).split(" Copyright")[0],
        first_line(["cc", "--version"]),
    ])


LEGEND = """\
Zokio/peer is the median of the per-round ratios (Zokio and peer run back to
back in each round, alternating who goes first); spread is their min–max.
**Above 1 means Zokio is better** for every metric: for throughput it is
Zokio/peer, for latency, memory per connection and wake-ups (lower is better)
it is peer/Zokio. Zokio and peer columns are medians over the rounds.
W is the worker count on both sides: Zokio and Tokio worker threads, Go's
GOMAXPROCS, fio's jobs (each with its own ring, queue depth split between
them); fio psync runs Q threads for queue depth Q whatever W is.

- Runtime (`zk-rt-bench` / `tokio-rt-bench`): ops/s from the median iteration
  time of one process; see benchmarks/README.md.
- tcp_echo_N: N connections, each a closed loop of 64-byte messages, driven by
  `zk-net-load` (threads + epoll, the same client for every server); msgs/s and
  P99 round-trip latency over the measured window. Server CPU/op: CPU time of
  all the server's threads in the window per message (per request for HTTP),
  steadier than throughput on a shared machine.
- http_hello: `wrk -c100 --latency` against a minimal keep-alive responder
  (Zokio, Tokio over TcpStream) and Go's net/http.
- http_lib_hello: the same wrk run, Zokio's side on its HTTP library
  (`zk-http-hello`: zk_http_server, full request parse, Date and Server
  headers), against the same Tokio responder and Go net/http.
- dns_cached: `zk-dns-bench`, lookups/s of "localhost" through zk_dns_lookup
  (4 tasks per worker; every lookup after the first is a resolver-cache hit)
  against glibc getaddrinfo() of the same name on W threads. getaddrinfo
  has no cache (it reads /etc/hosts each call): a reference for scale, not
  a like-for-like comparison.
- conn_capacity_10k: 10 000 idle connections, each after one echoed byte;
  RSS/conn is the server's RSS growth divided by the connections held.
- conn_capacity_100k: the same with 100 000 connections from six client
  processes (127.0.0.x sources), every server at six workers; Zokio's
  (`zk-net-server --direct`) holds them as io_uring direct descriptors, one
  SO_REUSEPORT listener and pinned acceptor per worker, zk_stream receives.
- idle, idle_timer: context switches per second of all the server's threads,
  idle with a pending accept (and, for idle_timer, a task asleep for an hour).
- Files: fio with the same file, block size, queue depth, warm-up (300 ms) and
  duration, page-aligned buffers on both sides; Zokio's queue depth is the
  number of tasks each doing zk_read or zk_write. Sequential writes are sized,
  not timed (direct: one pass over the file, buffered: four), and start and
  end with an fsync of the file outside the measurement; the rest are timed."""


def main():
    ap = argparse.ArgumentParser(prog="benchmarks/run", description=__doc__.split("\n\n")[0])
    ap.add_argument("names", nargs="*", help="benchmarks or groups to run (glob patterns)")
    ap.add_argument("--build", required=True)
    ap.add_argument("--bench", help="comma-separated benchmarks (same as NAME...)")
    ap.add_argument("--workers", default="1,2", help="worker counts, comma-separated")
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--iters", type=int)
    ap.add_argument("--duration", type=float, help="seconds measured per network run")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results"))
    a = ap.parse_args()
    a.rounds = a.rounds or (1 if a.quick else 5)
    a.iters = a.iters or (3 if a.quick else 10)
    a.duration = a.duration or (1.0 if a.quick else 2.0)
    a.file_duration = 0.7 if a.quick else 1.5
    a.warmup_ms = 200 if a.quick else 500
    a.idle_seconds = 1.0 if a.quick else 2.0
    workers = [int(x) for x in a.workers.split(",") if x]

    suite = Suite(a)
    if a.list:
        for b in suite.benches:
            print("%-26s %s" % (b.name, b.group))
        return 0
    benches = suite.selected()
    for b in benches:
        if b.fixed_workers:
            continue
        # Benchmarks meant for one worker run at the smallest count chosen.
        b.workers = tuple(w for w in b.workers if w in workers) or \
            ((min(workers),) if b.workers == (1,) else ())
        for impl, at in b.only_at.items():
            if at == "max":
                b.only_at[impl] = (max(workers),)

    global LOG
    os.makedirs(a.out, exist_ok=True)
    LOG = open(os.path.join(a.build, "bench-log.txt"), "w")
    started = datetime.datetime.now(datetime.timezone.utc)
    t0 = time.monotonic()
    part = os.path.join(a.out, "latest.jsonl.part")
    print("== running: workers=%s rounds=%d%s" % (a.workers, a.rounds, " (quick)" if a.quick else ""),
          file=sys.stderr)
    try:
        with open(part, "w") as jsonl:
            results, failures = run_all(suite, benches, workers, a.rounds, jsonl)
    finally:
        if suite.file:
            shutil.rmtree(suite.tmpdir, ignore_errors=True)
    os.replace(part, os.path.join(a.out, "latest.jsonl"))
    if suite.cached_seen:
        suite.note("files: buffered runs read a file %.0f%%–%.0f%% in the page cache (fincore), "
                   "so they measure the cache, not the disk" %
                   (100 * min(suite.cached_seen), 100 * max(suite.cached_seen)))

    commit = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True).stdout.strip()
    tab = table(suite, benches, results)
    head = ["# Zokio side-by-side benchmarks", "",
            "- date: %s (took %.0f s)" % (started.strftime("%Y-%m-%d %H:%M UTC"), time.monotonic() - t0),
            "- machine: %s" % machine(),
            "- command: `%s`" % " ".join(["benchmarks/run"] + sys.argv[3:]),
            "- commit: %s; rounds: %d; workers: %s; network window %.1f s, file window %.1f s" % (
                commit or "?", a.rounds, a.workers, a.duration, a.file_duration),
            "- peers: %s" % versions(a.build), ""]
    notes = suite.notes + ["capacity: the descriptor hard limit here is 20 000 per process; "
                           "conn_capacity_100k runs six client processes and every server at "
                           "six workers; Zokio's keeps connections as io_uring direct "
                           "descriptors (20 000 per ring), Tokio and Go stop at the limit."]
    md = "\n".join(head) + "\n" + tab + "\n\n" + LEGEND + "\n\nNotes:\n" + \
        "\n".join("- " + n for n in notes) + "\n"
    if failures:
        md += "\nFailures:\n" + "\n".join("- " + f for f in failures) + "\n"
    with open(os.path.join(a.out, "latest.md"), "w") as f:
        f.write(md)
    print(tab)
    print()
    print("Ratios above 1 mean Zokio is better (for latency, memory and wake-ups: peer/Zokio).")
    for n in notes:
        print("note: " + n)
    for f in failures:
        print("FAILED: " + f)
    print("\nresults: benchmarks/results/latest.md, latest.jsonl (log: %s)" %
          os.path.relpath(LOG.name, ROOT), file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
