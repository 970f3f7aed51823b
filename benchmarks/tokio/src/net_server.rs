//! benchmarks/tokio/src/net_server.rs — Tokio's side of the network
//! benchmarks (tokio-net-server): a TCP echo server and a minimal HTTP/1.1
//! "hello" responder over `TcpStream` (no hyper), one task per connection.
//! benchmarks/net_server.c is the Zokio side and serves the same bytes.
//!
//!   tokio-net-server --mode echo|http [--workers N] [--port P] [--sleeper]
//!
//! Listens on 127.0.0.1:P (0 picks a free port), prints "port=<P>" once it
//! accepts, and serves until killed. The accept loop is spawned onto the
//! runtime rather than run as the `block_on` future, which would poll it on
//! the main thread: an extra thread the Zokio side does not get. --sleeper
//! adds one task that sleeps for an hour: the idle benchmark's "a timer is
//! pending" case.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\n\
Content-Type: text/plain\r\n\
Content-Length: 13\r\n\
\r\n\
Hello, World!";

// Per-connection read buffer, as on the Zokio side (there on the task stack,
// here inside the connection's future).
const BUF_SIZE: usize = 4096;

async fn echo(mut s: TcpStream) {
    let mut buf = [0u8; BUF_SIZE];
    loop {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if s.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}

// Answers every complete request head with the fixed response; keep-alive,
// bodies are not read (wrk sends GETs). Requests that arrive together are
// answered with one write.
async fn http(mut s: TcpStream) {
    let mut buf = [0u8; BUF_SIZE];
    let mut fill = 0;
    let mut out = Vec::with_capacity(8 * RESPONSE.len());
    loop {
        let n = match s.read(&mut buf[fill..]).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        // A terminator may straddle the previous read's end.
        let mut scan = fill.saturating_sub(3);
        let mut start = 0;
        fill += n;
        out.clear();
        while let Some(i) = buf[scan..fill].windows(4).position(|w| w == b"\r\n\r\n") {
            start = scan + i + 4;
            scan = start;
            out.extend_from_slice(RESPONSE);
        }
        if !out.is_empty() && s.write_all(&out).await.is_err() {
            return;
        }
        buf.copy_within(start..fill, 0);
        fill -= start;
        if fill == buf.len() {
            return; // a request head larger than the buffer
        }
    }
}

async fn serve(mode: String, port: u16, sleeper: bool) -> io::Result<()> {
    if sleeper {
        tokio::spawn(tokio::time::sleep(Duration::from_secs(3600)));
    }
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    // SOMAXCONN, as zk_tcp_listen and Go's net.Listen use.
    let listener = socket.listen(4096)?;
    println!("port={}", listener.local_addr()?.port());
    let is_http = mode == "http";
    loop {
        let s = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                // Out of descriptors (the capacity benchmark gets here):
                // back off instead of spinning on the error.
                if e.raw_os_error() == Some(libc_emfile()) {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                continue;
            }
        };
        let _ = s.set_nodelay(true);
        if is_http {
            tokio::spawn(http(s));
        } else {
            tokio::spawn(echo(s));
        }
    }
}

// EMFILE without a libc dependency: its value on Linux.
fn libc_emfile() -> i32 {
    24
}

fn usage() -> ! {
    eprintln!("usage: tokio-net-server --mode echo|http [--workers N] [--port P] [--sleeper]");
    std::process::exit(2);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mut mode, mut workers, mut port) = ("echo".to_string(), 1usize, 0u16);
    let mut sleeper = false;
    let mut i = 0;
    while i < args.len() {
        if args[i] == "--sleeper" {
            sleeper = true;
            i += 1;
            continue;
        }
        let v = args.get(i + 1).cloned().unwrap_or_else(|| usage());
        match args[i].as_str() {
            "--mode" => mode = v,
            "--workers" => workers = v.parse().unwrap_or_else(|_| usage()),
            "--port" => port = v.parse().unwrap_or_else(|_| usage()),
            _ => usage(),
        }
        i += 2;
    }
    if workers == 0 || (mode != "echo" && mode != "http") {
        usage();
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("runtime");
    let server = rt.spawn(serve(mode, port, sleeper));
    if let Err(e) = rt.block_on(server).expect("accept loop panicked") {
        eprintln!("tokio-net-server: {}", e);
        std::process::exit(1);
    }
}
