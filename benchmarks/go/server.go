// benchmarks/go/server.go — Go's side of the network benchmarks
// (go-net-server): a TCP echo server (one goroutine per connection) and an
// HTTP/1.1 "hello" server on net/http. Standard library only, so it builds
// offline. benchmarks/net_server.c is the Zokio side.
//
//	go-net-server --mode echo|http [--workers N] [--port P] [--sleeper]
//
// --workers sets GOMAXPROCS, Go's counterpart of a worker count. Listens on
// 127.0.0.1:P (0 picks a free port), prints "port=<P>" once it accepts, and
// serves until killed. --sleeper adds one goroutine that sleeps for an hour:
// the idle benchmark's "a timer is pending" case.
package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"runtime"
	"syscall"
	"time"
)

// Per-connection read buffer, as on the Zokio and Tokio sides.
const bufSize = 4096

var hello = []byte("Hello, World!")

func echo(c net.Conn) {
	defer c.Close()
	buf := make([]byte, bufSize)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func serveEcho(ln net.Listener) error {
	for {
		c, err := ln.Accept()
		if err != nil {
			// Out of descriptors (the capacity benchmark gets here):
			// back off instead of spinning on the error.
			if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		// Go sets TCP_NODELAY on every TCP connection, as the other
		// servers do explicitly.
		go echo(c)
	}
}

func main() {
	mode := flag.String("mode", "echo", "echo or http")
	workers := flag.Int("workers", 1, "GOMAXPROCS")
	port := flag.Int("port", 0, "port on 127.0.0.1 (0: any free port)")
	sleeper := flag.Bool("sleeper", false, "one goroutine sleeping for an hour")
	flag.Parse()
	if *workers < 1 || (*mode != "echo" && *mode != "http") {
		flag.Usage()
		os.Exit(2)
	}
	runtime.GOMAXPROCS(*workers)
	if *sleeper {
		go time.Sleep(time.Hour)
	}

	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", *port))
	if err != nil {
		fmt.Fprintln(os.Stderr, "go-net-server:", err)
		os.Exit(1)
	}
	fmt.Printf("port=%d\n", ln.Addr().(*net.TCPAddr).Port)

	if *mode == "echo" {
		err = serveEcho(ln)
	} else {
		handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			w.Write(hello)
		})
		err = (&http.Server{Handler: handler}).Serve(ln)
	}
	fmt.Fprintln(os.Stderr, "go-net-server:", err)
	os.Exit(1)
}
