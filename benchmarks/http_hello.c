/* benchmarks/http_hello.c — the "hello" HTTP/1.1 keep-alive server on
 * Zokio's HTTP library (lib/http: zk_http_server_*), for the runner's
 * http_lib_hello benchmark, against the same Tokio and Go servers as
 * http_hello (which uses the hand-written responder in net_server.c).
 *
 *   zk-http-hello [--workers N] [--port P]
 *
 * Listens on 127.0.0.1:P (0 picks a free port), prints "port=<P>" on stdout
 * and serves until SIGTERM/SIGINT. Every request is answered with 200,
 * Content-Type: text/plain and "Hello, World!" (13 bytes) through
 * zk_http_respond(); the library adds Date, Server and Content-Length,
 * as Go's net/http adds Date and Content-Length. The library does the
 * strict parse of every request head, which the raw responders skip. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "zokio/http.h"
#include "zokio/zokio.h"

static zk_http_server_t *srv;

static int hello(zk_http_conn_t *c, const zk_http_request_t *req, void *ctx)
{
	(void)req, (void)ctx;
	return zk_http_respond(c, 200, "text/plain", "Hello, World!", 13);
}

static void on_signal(int sig)
{
	(void)sig;
	zk_http_server_stop(srv); /* non-blocking, callable from any thread */
}

static void *serve(void *arg)
{
	(void)arg;
	int r = zk_http_server_run(srv);
	return (void *)(intptr_t)r;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: zk-http-hello [--workers N] [--port P]\n");
}

int main(int argc, char **argv)
{
	unsigned workers = 1;
	long port = 0;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (strcmp(a, "--workers") == 0 && v) {
			workers = (unsigned)strtoul(v, NULL, 10), i++;
		} else if (strcmp(a, "--port") == 0 && v) {
			port = strtol(v, NULL, 10), i++;
		} else if (strcmp(a, "--mode") == 0 && v) {
			i++; /* accepted for symmetry with zk-net-server; http only */
		} else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			usage(stdout);
			return 0;
		} else {
			usage(stderr);
			return 2;
		}
	}
	if (workers < 1 || port < 0 || port > 65535) {
		usage(stderr);
		return 2;
	}
	zk_http_server_config_t hc = {.host = "127.0.0.1", .port = (uint16_t)port,
				      .backlog = 4096, .handler = hello};
	int r = zk_http_server_create(&srv, &hc);
	if (r < 0) {
		fprintf(stderr, "zk-http-hello: listen: %s\n", strerror(-r));
		return 1;
	}
	zk_config_t cfg = {.workers = workers};
	zk_runtime_t *rt;
	r = zk_runtime_create(&rt, &cfg);
	if (r < 0) {
		fprintf(stderr, "zk-http-hello: runtime: %s\n", strerror(-r));
		return 1;
	}
	struct sigaction sa = {.sa_handler = on_signal};
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	printf("port=%d\n", zk_http_server_port(srv));
	fflush(stdout);
	void *res = NULL;
	r = zk_block_on(rt, serve, NULL, &res);
	zk_runtime_free(rt);
	zk_http_server_free(srv);
	return r < 0 || (intptr_t)res < 0 ? 1 : 0;
}
