//! benchmarks/tokio/src/main.rs — Tokio's side of the side-by-side scheduler
//! benchmarks (tokio-rt-bench). benchmarks/rt_bench.c does the same work on
//! Zokio and prints the same lines; benchmarks/run runs both and compares.
//!
//! The workloads follow Tokio's benches/rt_multi_threaded.rs, reshaped so
//! that both sides do the same work: a driver task spawns the work and waits
//! on a oneshot that the last task completes (Tokio's benches use an mpsc
//! there), and the counters and the sender are statics, as the C side's are
//! globals, rather than an Arc cloned into every task. The sync benchmarks
//! (mpsc_*, mutex_contended, notify_pingpong) measure tokio::sync against
//! zokio/sync.h; they check their results and exit 1 on a wrong one. Each benchmark gets a fresh runtime
//! (multi-thread, `worker_threads(W)`, I/O and time drivers on), runs
//! --warmup untimed iterations, then --iters timed ones, and prints
//!
//!   bench=<name> runtime=tokio workers=<W> median_ns=<n> ops_per_sec=<x>
//!
//! An iteration is timed on the main thread around `block_on` (or the spawns
//! plus a latch for the remote benchmark), as on the C side.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tokio::runtime::{Builder, Runtime};
use tokio::sync::{mpsc, oneshot, Notify};

// Sizes, as in rt_bench.c (keep the two in step).
const SPAWN_MANY_N: usize = 100_000;
const CHAIN_DEPTH: usize = 1_000;
const PING_PONG_PAIRS: usize = 1_000;
const YIELD_TASKS: usize = 200;
const YIELD_COUNT: usize = 1_000;
const SLEEPERS_N: usize = 100_000;
const SLEEP_MS: u64 = 10;
const CHURN_TASKS: usize = 100;
const CHURN_ROUNDS: usize = 100;
// Far enough that a churned sleeper never fires on its own.
const CHURN_SLEEP_MS: u64 = 60_000;
const MPSC_MSGS: u64 = 1_000_000;
const MPSC_CAP: usize = 1024;
const MPSC_PRODUCERS: u64 = 4;
const MPSC_BATCH: usize = 64;
const MUTEX_TASKS: usize = 4;
const MUTEX_ITERS: usize = 100_000;
const NOTIFY_ROUNDS: usize = 100_000;

// A wrong result (a lost message, a lost increment): say so and exit 1.
fn verify(ok: bool, what: std::fmt::Arguments) {
    if !ok {
        eprintln!("tokio-rt-bench: check failed: {}", what);
        std::process::exit(1);
    }
}

// ---- shared completion state ------------------------------------------------

static REMAINING: AtomicUsize = AtomicUsize::new(0);
static DONE: Mutex<Option<oneshot::Sender<()>>> = Mutex::new(None);

// Relaxed, as in Tokio's benches: the oneshot the last task completes orders
// everything before it. The mutex is taken once per iteration.
fn count_down() {
    if REMAINING.fetch_sub(1, Relaxed) == 1 {
        let tx = DONE.lock().unwrap().take().expect("done sender armed");
        tx.send(()).unwrap();
    }
}

fn arm(n: usize) -> oneshot::Receiver<()> {
    REMAINING.store(n, Relaxed);
    let (tx, rx) = oneshot::channel();
    *DONE.lock().unwrap() = Some(tx);
    rx
}

// Runs `driver` as a task (not as the block_on future, which would run on
// the main thread) and waits for it, like zk_block_on.
fn block_on_task<F>(rt: &Runtime, driver: F)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    rt.block_on(rt.spawn(driver)).unwrap();
}

// ---- benchmarks ----------------------------------------------------------------

fn spawn_many_local(rt: &Runtime) {
    let rx = arm(SPAWN_MANY_N);
    block_on_task(rt, async move {
        for _ in 0..SPAWN_MANY_N {
            tokio::spawn(async { count_down() });
        }
        rx.await.unwrap();
    });
}

// The main thread is not a task, so the last task signals a condvar, as the
// C side does.
static LATCH: Mutex<bool> = Mutex::new(false);
static LATCH_CV: Condvar = Condvar::new();

fn spawn_many_remote(rt: &Runtime) {
    REMAINING.store(SPAWN_MANY_N, Relaxed);
    *LATCH.lock().unwrap() = false;
    for _ in 0..SPAWN_MANY_N {
        rt.spawn(async {
            if REMAINING.fetch_sub(1, Relaxed) == 1 {
                *LATCH.lock().unwrap() = true;
                LATCH_CV.notify_one();
            }
        });
    }
    let mut set = LATCH.lock().unwrap();
    while !*set {
        set = LATCH_CV.wait(set).unwrap();
    }
}

fn chain_step(n: usize) {
    if n == 0 {
        count_down();
    } else {
        tokio::spawn(async move { chain_step(n - 1) });
    }
}

fn chained_spawn(rt: &Runtime) {
    let rx = arm(1);
    block_on_task(rt, async move {
        tokio::spawn(async { chain_step(CHAIN_DEPTH) });
        rx.await.unwrap();
    });
}

fn ping_pong(rt: &Runtime) {
    let rx = arm(PING_PONG_PAIRS);
    block_on_task(rt, async move {
        for _ in 0..PING_PONG_PAIRS {
            tokio::spawn(async {
                let (tx1, rx1) = oneshot::channel::<()>();
                let (tx2, rx2) = oneshot::channel::<()>();
                tokio::spawn(async move {
                    rx1.await.unwrap();
                    tx2.send(()).unwrap();
                });
                tx1.send(()).unwrap();
                rx2.await.unwrap();
                count_down();
            });
        }
        rx.await.unwrap();
    });
}

fn yield_many(rt: &Runtime) {
    let rx = arm(YIELD_TASKS);
    block_on_task(rt, async move {
        for _ in 0..YIELD_TASKS {
            tokio::spawn(async {
                for _ in 0..YIELD_COUNT {
                    tokio::task::yield_now().await;
                }
                count_down();
            });
        }
        rx.await.unwrap();
    });
}

fn sleepers(rt: &Runtime) {
    let rx = arm(SLEEPERS_N);
    block_on_task(rt, async move {
        for _ in 0..SLEEPERS_N {
            tokio::spawn(async {
                tokio::time::sleep(Duration::from_millis(SLEEP_MS)).await;
                count_down();
            });
        }
        rx.await.unwrap();
    });
}

// Sleepers that started (and so armed their timer) before the abort; see the
// C side. Counted before the sleep: an aborted future never resumes.
static CHURN_ARMED: AtomicUsize = AtomicUsize::new(0);

fn timer_churn(rt: &Runtime) {
    let rx = arm(CHURN_TASKS);
    block_on_task(rt, async move {
        for _ in 0..CHURN_TASKS {
            tokio::spawn(async {
                for _ in 0..CHURN_ROUNDS {
                    let h = tokio::spawn(async {
                        CHURN_ARMED.fetch_add(1, Relaxed);
                        tokio::time::sleep(Duration::from_millis(CHURN_SLEEP_MS)).await;
                        panic!("churned sleeper was not aborted");
                    });
                    // Let the sleeper run and arm its timer before the abort.
                    tokio::task::yield_now().await;
                    h.abort();
                    match h.await {
                        Err(e) if e.is_cancelled() => {}
                        _ => panic!("churned sleeper did not end cancelled"),
                    }
                }
                count_down();
            });
        }
        rx.await.unwrap();
    });
}

// Producers send MPSC_MSGS messages in all into a bounded channel of
// MPSC_CAP; the driver task is the consumer and receives until every Sender
// is dropped. A message is (producer << 32 | sequence from 1): the consumer
// checks each producer's FIFO order, the count and the sum, as the C side.
// The batch variant drains up to MPSC_BATCH per wake-up with try_recv after
// a recv (Tokio 1.24 has no recv_many), as zk_chan_recv_many does.
fn mpsc_run(rt: &Runtime, producers: u64, batch: bool) {
    block_on_task(rt, async move {
        let (tx, mut rx) = mpsc::channel::<u64>(MPSC_CAP);
        let n = MPSC_MSGS / producers;
        for p in 0..producers {
            let tx = tx.clone();
            tokio::spawn(async move {
                for i in 1..=n {
                    tx.send(p << 32 | i).await.unwrap();
                }
            });
        }
        drop(tx);
        let mut last = [0u64; MPSC_PRODUCERS as usize];
        let (mut count, mut sum) = (0u64, 0u64);
        let mut take = |v: u64| {
            let (p, seq) = ((v >> 32) as usize, v & 0xffff_ffff);
            verify(
                p < producers as usize && seq == last[p] + 1,
                format_args!("mpsc: producer {} message {} out of order", p, seq),
            );
            last[p] = seq;
            count += 1;
            sum += seq;
        };
        while let Some(v) = rx.recv().await {
            take(v);
            if batch {
                for _ in 1..MPSC_BATCH {
                    match rx.try_recv() {
                        Ok(v) => take(v),
                        Err(_) => break,
                    }
                }
            }
        }
        verify(
            count == MPSC_MSGS && sum == producers * (n * (n + 1) / 2),
            format_args!(
                "mpsc: received {} messages (sum {}), expected {}",
                count, sum, MPSC_MSGS
            ),
        );
    });
}

fn mpsc_1to1(rt: &Runtime) {
    mpsc_run(rt, 1, false);
}

fn mpsc_1to1_batch(rt: &Runtime) {
    mpsc_run(rt, 1, true);
}

fn mpsc_4to1(rt: &Runtime) {
    mpsc_run(rt, MPSC_PRODUCERS, false);
}

// MUTEX_TASKS tasks each lock one async mutex MUTEX_ITERS times and bump the
// counter it guards; the driver joins them and checks the count.
fn mutex_contended(rt: &Runtime) {
    block_on_task(rt, async {
        let m = Arc::new(tokio::sync::Mutex::new(0u64));
        let handles: Vec<_> = (0..MUTEX_TASKS)
            .map(|_| {
                let m = m.clone();
                tokio::spawn(async move {
                    for _ in 0..MUTEX_ITERS {
                        *m.lock().await += 1;
                    }
                })
            })
            .collect();
        for h in handles {
            h.await.unwrap();
        }
        let c = *m.lock().await;
        verify(
            c == (MUTEX_TASKS * MUTEX_ITERS) as u64,
            format_args!("mutex: counter {}, expected {}", c, MUTEX_TASKS * MUTEX_ITERS),
        );
    });
}

// The driver notifies `ping` and waits on `pong`; a partner task waits on
// `ping`, counts, and notifies `pong`: NOTIFY_ROUNDS round trips.
fn notify_pingpong(rt: &Runtime) {
    block_on_task(rt, async {
        let ping = Arc::new(Notify::new());
        let pong = Arc::new(Notify::new());
        let (ping2, pong2) = (ping.clone(), pong.clone());
        let partner = tokio::spawn(async move {
            let mut count = 0usize;
            for _ in 0..NOTIFY_ROUNDS {
                ping2.notified().await;
                count += 1;
                pong2.notify_one();
            }
            count
        });
        for _ in 0..NOTIFY_ROUNDS {
            ping.notify_one();
            pong.notified().await;
        }
        let count = partner.await.unwrap();
        verify(
            count == NOTIFY_ROUNDS,
            format_args!("notify: {} round trips, expected {}", count, NOTIFY_ROUNDS),
        );
    });
}

// ---- driver -------------------------------------------------------------------------

struct Bench {
    name: &'static str,
    run: fn(&Runtime),
    ops: f64, // units of work in one iteration, for ops_per_sec
}

const BENCHES: &[Bench] = &[
    Bench {
        name: "spawn_many_local",
        run: spawn_many_local,
        ops: SPAWN_MANY_N as f64,
    },
    Bench {
        name: "spawn_many_remote",
        run: spawn_many_remote,
        ops: SPAWN_MANY_N as f64,
    },
    Bench {
        name: "chained_spawn",
        run: chained_spawn,
        ops: CHAIN_DEPTH as f64,
    },
    Bench {
        name: "ping_pong",
        run: ping_pong,
        ops: PING_PONG_PAIRS as f64,
    },
    Bench {
        name: "yield_many",
        run: yield_many,
        ops: (YIELD_TASKS * YIELD_COUNT) as f64,
    },
    Bench {
        name: "sleepers",
        run: sleepers,
        ops: SLEEPERS_N as f64,
    },
    Bench {
        name: "timer_churn",
        run: timer_churn,
        ops: (CHURN_TASKS * CHURN_ROUNDS) as f64,
    },
    Bench {
        name: "mpsc_1to1",
        run: mpsc_1to1,
        ops: MPSC_MSGS as f64,
    },
    Bench {
        name: "mpsc_1to1_batch",
        run: mpsc_1to1_batch,
        ops: MPSC_MSGS as f64,
    },
    Bench {
        name: "mpsc_4to1",
        run: mpsc_4to1,
        ops: MPSC_MSGS as f64,
    },
    Bench {
        name: "mutex_contended",
        run: mutex_contended,
        ops: (MUTEX_TASKS * MUTEX_ITERS) as f64,
    },
    Bench {
        name: "notify_pingpong",
        run: notify_pingpong,
        ops: NOTIFY_ROUNDS as f64,
    },
];

fn run_bench(b: &Bench, workers: usize, warmup: usize, iters: usize, show_samples: bool) {
    let rt = Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("tokio runtime");
    for _ in 0..warmup {
        (b.run)(&rt);
    }
    CHURN_ARMED.store(0, Relaxed);
    let mut samples: Vec<u64> = (0..iters)
        .map(|_| {
            let t0 = Instant::now();
            (b.run)(&rt);
            t0.elapsed().as_nanos() as u64
        })
        .collect();
    if b.name == "timer_churn" {
        eprintln!(
            "# tokio timer_churn: {} of {} sleepers armed before abort",
            CHURN_ARMED.load(Relaxed),
            iters * CHURN_TASKS * CHURN_ROUNDS
        );
    }
    drop(rt);
    if show_samples {
        let list: Vec<String> = samples.iter().map(|s| s.to_string()).collect();
        eprintln!("# tokio {} samples_ns: {}", b.name, list.join(" "));
    }
    samples.sort_unstable();
    let n = samples.len();
    let med = if n % 2 == 1 {
        samples[n / 2]
    } else {
        (samples[n / 2 - 1] + samples[n / 2]) / 2
    };
    println!(
        "bench={} runtime=tokio workers={} median_ns={} ops_per_sec={:.0}",
        b.name,
        workers,
        med,
        b.ops * 1e9 / med.max(1) as f64
    );
}

fn usage() -> &'static str {
    "usage: tokio-rt-bench [--workers N] [--iters N] [--warmup N] [--bench NAME[,NAME...]] [--samples] [--list]"
}

fn parse_count(flag: &str, v: Option<&String>, min: usize) -> usize {
    match v.and_then(|s| s.parse::<usize>().ok()) {
        Some(n) if n >= min && n <= 1_000_000 => n,
        _ => {
            eprintln!("tokio-rt-bench: bad value for {}\n{}", flag, usage());
            std::process::exit(2);
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mut workers, mut iters, mut warmup) = (2usize, 10usize, 1usize);
    let mut only: Option<Vec<String>> = None;
    let mut show_samples = false;
    let mut i = 0;
    while i < args.len() {
        let flag = args[i].as_str();
        let v = args.get(i + 1);
        i += 1;
        match flag {
            "--workers" => workers = parse_count(flag, v, 1),
            "--iters" => iters = parse_count(flag, v, 1),
            "--warmup" => warmup = parse_count(flag, v, 0),
            "--bench" if v.is_some() => {
                only = Some(v.unwrap().split(',').map(str::to_owned).collect())
            }
            "--samples" => {
                show_samples = true;
                continue;
            }
            "--list" => {
                BENCHES.iter().for_each(|b| println!("{}", b.name));
                return;
            }
            "--help" | "-h" => {
                println!("{}", usage());
                return;
            }
            other => {
                eprintln!("tokio-rt-bench: unknown argument {}\n{}", other, usage());
                std::process::exit(2);
            }
        }
        i += 1; // every flag that gets here took a value
    }
    if let Some(names) = &only {
        // An unknown name is a typo, not an empty run.
        for n in names {
            if !BENCHES.iter().any(|b| b.name == n) {
                eprintln!("tokio-rt-bench: unknown benchmark {}", n);
                std::process::exit(2);
            }
        }
    }
    for b in BENCHES {
        // A match, not Option::is_none_or: Debian's rustc 1.63 must build this.
        let wanted = match &only {
            None => true,
            Some(names) => names.iter().any(|n| n == b.name),
        };
        if wanted {
            run_bench(b, workers, warmup, iters, show_samples);
        }
    }
}
