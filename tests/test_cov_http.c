/* tests/test_cov_http.c — http.h response helpers in the corners the
 * server suite leaves out, driven by a real client over 127.0.0.1: every
 * documented -EINVAL of the response calls (called from a live handler),
 * a chunked response to an HTTP/1.0 client (sent unframed, then closed), a
 * chunk too large for the response buffer, a file body that ends before
 * the length the head promised (-EIO, connection closed), and a Server
 * name too long for the fast path. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "helpers.h"

TestSuite(cov_http, .timeout = 60);

#define BIG_CHUNK 65536
#define LONG_NAME                                                                          \
	"a-server-name-that-is-much-longer-than-sixty-four-characters-so-the-status-line-" \
	"takes-the-slow-path"

struct srv_state {
	zk_http_server_t *srv;
	int run_res;
	int file_fd;
	int body_file_res;
};

static int handler(zk_http_conn_t *c, const zk_http_request_t *req, void *ctx)
{
	struct srv_state *s = ctx;
	const char *path = req->target;
	size_t plen = req->target_len;
	if (plen == 7 && memcmp(path, "/misuse", 7) == 0) {
		/* Nothing may come before zk_http_begin. */
		ZT_CHECK_EQ(zk_http_header(c, "X-A", "b"), -EINVAL);
		ZT_CHECK_EQ(zk_http_body(c, "x", 1), -EINVAL);
		ZT_CHECK_EQ(zk_http_chunk(c, "x", 1), -EINVAL);
		ZT_CHECK_EQ(zk_http_chunked_end(c), -EINVAL);
		ZT_CHECK_EQ(zk_http_conn_status(c), 0);
		ZT_CHECK_EQ(zk_http_begin(NULL, 200), -EINVAL);
		ZT_CHECK_EQ(zk_http_begin(c, 99), -EINVAL);
		ZT_CHECK_EQ(zk_http_begin(c, 150), -EINVAL); /* 1xx */
		ZT_CHECK_EQ(zk_http_begin(c, 1000), -EINVAL);
		ZT_CHECK_EQ(zk_http_begin(c, 200), 0);
		ZT_CHECK_EQ(zk_http_begin(c, 201), -EINVAL); /* already started */
		ZT_CHECK_EQ(zk_http_conn_status(c), 200);
		/* Headers the server writes itself, and malformed ones. */
		ZT_CHECK_EQ(zk_http_header(c, "Content-Length", "3"), -EINVAL);
		ZT_CHECK_EQ(zk_http_header(c, "transfer-encoding", "chunked"), -EINVAL);
		ZT_CHECK_EQ(zk_http_header(c, "Connection", "close"), -EINVAL);
		ZT_CHECK_EQ(zk_http_header(c, "Date", "today"), -EINVAL);
		ZT_CHECK_EQ(zk_http_header(c, "X-Split", "a\r\nInjected: 1"), -EINVAL);
		ZT_CHECK_EQ(zk_http_header(c, "X:Colon", "v"), -EINVAL);
		ZT_CHECK_EQ(zk_http_header(c, "", "v"), -EINVAL);
		ZT_CHECK_EQ(zk_http_header(c, NULL, "v"), -EINVAL);
		ZT_CHECK_EQ(zk_http_header(c, "X-Ok", "yes"), 0);
		ZT_CHECK_EQ(zk_http_body(c, NULL, 5), -EINVAL);
		ZT_CHECK_EQ(zk_http_body_file(c, -1, 0, 1), -EINVAL);
		ZT_CHECK_EQ(zk_http_body_file(c, 0, -1, 1), -EINVAL);
		ZT_CHECK_EQ(zk_http_close_after(NULL), -EINVAL);
		ZT_CHECK_EQ(zk_http_conn_fd(NULL), -EINVAL);
		int fd = zk_http_conn_fd(c);
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		ZT_CHECK_EQ(getpeername(fd, (struct sockaddr *)&ss, &sl), 0);
		ZT_CHECK_EQ(zk_http_body(c, "ok!", 3), 0);
		ZT_CHECK_EQ(zk_http_conn_body_bytes(c), 3);
		ZT_CHECK_EQ(zk_http_header(c, "X-Late", "v"), -EINVAL); /* head sent */
		return 0;
	}
	if (plen == 8 && memcmp(path, "/chunked", 8) == 0) {
		ZT_CHECK_EQ(zk_http_begin(c, 200), 0);
		ZT_CHECK_EQ(zk_http_chunked_begin(c), 0);
		ZT_CHECK_EQ(zk_http_chunk(c, "abc", 3), 0);
		ZT_CHECK_EQ(zk_http_chunk(c, "", 0), 0);
		ZT_CHECK_EQ(zk_http_chunk(c, "def", 3), 0);
		ZT_CHECK_EQ(zk_http_chunked_end(c), 0);
		ZT_CHECK_EQ(zk_http_chunk(c, "late", 4), -EINVAL); /* ended */
		return 0;
	}
	if (plen == 4 && memcmp(path, "/big", 4) == 0) {
		char *data = malloc(BIG_CHUNK);
		zt_fill(data, BIG_CHUNK, 3);
		ZT_CHECK_EQ(zk_http_begin(c, 200), 0);
		ZT_CHECK_EQ(zk_http_chunked_begin(c), 0);
		ZT_CHECK_EQ(zk_http_chunk(c, data, BIG_CHUNK), 0);
		ZT_CHECK_EQ(zk_http_chunked_end(c), 0);
		free(data);
		return 0;
	}
	if (plen == 6 && memcmp(path, "/short", 6) == 0) {
		/* The file holds 10 bytes; 100 are promised. */
		ZT_CHECK_EQ(zk_http_begin(c, 200), 0);
		s->body_file_res = zk_http_body_file(c, s->file_fd, 0, 100);
		return 0;
	}
	return zk_http_respond(c, 404, "text/plain", "no", 2);
}

static void *run_server(void *arg)
{
	struct srv_state *s = arg;
	s->run_res = zk_http_server_run(s->srv);
	return NULL;
}

/* Sends req on a new connection and reads until the server closes it (or
 * cap bytes). Returns the bytes read into buf (NUL-terminated). */
static size_t fetch(int port, const char *req, char *buf, size_t cap)
{
	int fd = zk_tcp_connect("127.0.0.1", (uint16_t)port);
	ZT_CHECK(fd >= 0);
	if (fd < 0)
		return 0;
	ZT_CHECK_EQ(zk_send_all(fd, req, strlen(req)), (ssize_t)strlen(req));
	size_t got = 0;
	for (;;) {
		ZT_CHECK_EQ(zk_timeout_next(10 * ZK_NSEC_PER_SEC), 0);
		ssize_t n = zk_recv(fd, buf + got, cap - 1 - got, 0);
		if (n <= 0) {
			ZT_CHECK(n == 0 || n == -ECONNRESET);
			break;
		}
		got += (size_t)n;
		if (got == cap - 1)
			break;
	}
	buf[got] = 0;
	zk_close(fd);
	return got;
}

static void *client(void *arg)
{
	(void)arg;
	struct srv_state s = {.file_fd = -1, .body_file_res = 1};
	char *dir = zt_tmpdir();
	char path[512];
	snprintf(path, sizeof(path), "%s/ten", dir);
	s.file_fd = zk_open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	ZT_CHECK(s.file_fd >= 0);
	ZT_CHECK_EQ(zk_write_all(s.file_fd, "0123456789", 10, 0), 10);

	zk_http_server_config_t cfg;
	memset(&cfg, 0, sizeof(cfg));
	cfg.host = "127.0.0.1";
	cfg.handler = handler;
	cfg.ctx = &s;
	cfg.server_name = LONG_NAME;
	ZT_CHECK_EQ(zk_http_server_create(&s.srv, &cfg), 0);
	int port = zk_http_server_port(s.srv);
	ZT_CHECK(port > 0);
	zk_task_t *t;
	ZT_CHECK_EQ(zk_spawn(&t, run_server, &s), 0);

	size_t cap = BIG_CHUNK + 4096;
	char *buf = malloc(cap);

	size_t n = fetch(port, "GET /misuse HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", buf,
			 cap);
	ZT_CHECK(n > 0 && strncmp(buf, "HTTP/1.1 200 ", 13) == 0);
	ZT_CHECK(strstr(buf, "\r\nServer: " LONG_NAME "\r\n") != NULL);
	ZT_CHECK(strstr(buf, "\r\nX-Ok: yes\r\n") != NULL);
	ZT_CHECK(strstr(buf, "Injected") == NULL);
	ZT_CHECK(strstr(buf, "X-Late") == NULL);
	ZT_CHECK(n >= 7 && strcmp(buf + n - 7, "\r\n\r\nok!") == 0);

	/* HTTP/1.0: no chunk framing, the end of the body is the close. */
	n = fetch(port, "GET /chunked HTTP/1.0\r\n\r\n", buf, cap);
	ZT_CHECK(n > 0 && strstr(buf, " 200 ") != NULL);
	ZT_CHECK(strstr(buf, "Transfer-Encoding") == NULL);
	ZT_CHECK(n >= 10 && strcmp(buf + n - 10, "\r\n\r\nabcdef") == 0);

	/* HTTP/1.1: the same handler, chunked. */
	n = fetch(port, "GET /chunked HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", buf, cap);
	ZT_CHECK(strstr(buf, "\r\nTransfer-Encoding: chunked\r\n") != NULL);
	ZT_CHECK(n >= 25 && strcmp(buf + n - 25, "\r\n\r\n3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n") == 0);

	/* A chunk larger than the response buffer. */
	n = fetch(port, "GET /big HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", buf, cap);
	char *body = strstr(buf, "\r\n\r\n");
	ZT_CHECK(body != NULL);
	if (body) {
		body += 4;
		ZT_CHECK(strncmp(body, "10000\r\n", 7) == 0);
		ZT_CHECK((size_t)(body - buf) + 7 + BIG_CHUNK + 7 == n);
		if ((size_t)(body - buf) + 7 + BIG_CHUNK + 7 == n) {
			ZT_CHECK(zt_check_fill(body + 7, BIG_CHUNK, 3, 0));
			ZT_CHECK(memcmp(body + 7 + BIG_CHUNK, "\r\n0\r\n\r\n", 7) == 0);
		}
	}

	/* A file shorter than promised: -EIO, and the connection is closed
	 * without a response that would lie about its length. */
	n = fetch(port, "GET /short HTTP/1.1\r\nHost: x\r\n\r\n", buf, cap);
	ZT_CHECK_EQ(s.body_file_res, -EIO);
	ZT_CHECK(strstr(buf, "Content-Length: 100") == NULL);

	ZT_CHECK_EQ(zk_http_server_stop(s.srv), 0);
	ZT_CHECK_EQ(zk_join(t, NULL), 0);
	ZT_CHECK_EQ(s.run_res, 0);
	zk_http_server_free(s.srv);
	free(buf);
	zk_close(s.file_fd);
	zt_rmtree(dir);
	return NULL;
}

Test(cov_http, response_helpers_refuse_misuse_and_frame_bodies_as_documented)
{
	const zk_backend_kind_t kinds[] = {ZK_BACKEND_DEFAULT, ZK_BACKEND_EPOLL};
	for (unsigned i = 0; i < 2; i++) {
		zk_config_t cfg;
		memset(&cfg, 0, sizeof(cfg));
		cfg.workers = 2;
		cfg.backend = kinds[i];
		zk_runtime_t *rt = NULL;
		cr_assert_eq(zk_runtime_create(&rt, &cfg), 0);
		zt_run(rt, client, NULL);
		zk_runtime_free(rt);
	}
}

/* ---- server lifecycle and its argument errors ------------------------------------------------ */

static int hello(zk_http_conn_t *c, const zk_http_request_t *req, void *ctx)
{
	(void)req;
	(void)ctx;
	return zk_http_respond(c, 200, "text/plain", "hi", 2);
}

static void *server_lifecycle(void *arg)
{
	(void)arg;
	zk_http_server_t *srv = NULL;
	zk_http_server_config_t cfg;
	memset(&cfg, 0, sizeof(cfg));
	cfg.host = "127.0.0.1";
	ZT_CHECK_EQ(zk_http_server_create(&srv, &cfg), -EINVAL); /* no handler */
	ZT_CHECK_EQ(zk_http_server_create(NULL, &cfg), -EINVAL);
	ZT_CHECK_EQ(zk_http_server_create(&srv, NULL), -EINVAL);
	cfg.handler = hello;
	cfg.server_name = "bad\r\nname";
	ZT_CHECK_EQ(zk_http_server_create(&srv, &cfg), -EINVAL);
	char longname[300];
	memset(longname, 'n', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = 0;
	cfg.server_name = longname;
	ZT_CHECK_EQ(zk_http_server_create(&srv, &cfg), -EINVAL);
	cfg.server_name = NULL;
	cfg.host = "not-an-address";
	ZT_CHECK_EQ(zk_http_server_create(&srv, &cfg), -EINVAL);
	ZT_CHECK_EQ(zk_http_server_port(NULL), -EINVAL);
	ZT_CHECK_EQ(zk_http_server_run(NULL), -EINVAL);
	ZT_CHECK_EQ(zk_http_server_stop(NULL), -EINVAL);
	ZT_CHECK_EQ(zk_http_server_connections(NULL), 0);
	zk_http_server_free(NULL);

	/* A port already taken. */
	int lfd = zk_tcp_listen("127.0.0.1", 0, 16);
	ZT_CHECK(lfd >= 0);
	cfg.host = "127.0.0.1";
	cfg.port = (uint16_t)zk_socket_port(lfd);
	ZT_CHECK_EQ(zk_http_server_create(&srv, &cfg), -EADDRINUSE);

	/* A server on a listening socket the caller owns: it serves, and it
	 * leaves the socket open when freed. */
	cfg.port = 0;
	cfg.listen_fd = lfd;
	ZT_CHECK_EQ(zk_http_server_create(&srv, &cfg), 0);
	ZT_CHECK_EQ(zk_http_server_port(srv), zk_socket_port(lfd));
	struct srv_state st = {.srv = srv, .run_res = 1};
	zk_task_t *t;
	ZT_CHECK_EQ(zk_spawn(&t, run_server, &st), 0);
	char buf[1024];
	size_t n = fetch(zk_socket_port(lfd), "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
			 buf, sizeof(buf));
	ZT_CHECK(n > 0 && strncmp(buf, "HTTP/1.1 200 ", 13) == 0);
	ZT_CHECK(n >= 6 && strcmp(buf + n - 6, "\r\n\r\nhi") == 0);
	ZT_CHECK_EQ(zk_http_server_stop(srv), 0);
	ZT_CHECK_EQ(zk_http_server_stop(srv), 0); /* any number of times */
	ZT_CHECK_EQ(zk_join(t, NULL), 0);
	ZT_CHECK_EQ(st.run_res, 0);
	ZT_CHECK_EQ(zk_http_server_run(srv), -EINVAL); /* once */
	zk_http_server_free(srv);
	ZT_CHECK(fcntl(lfd, F_GETFD) >= 0); /* still open */
	zk_close(lfd);

	/* A server never run is freed with its own socket. */
	cfg.listen_fd = 0;
	ZT_CHECK_EQ(zk_http_server_create(&srv, &cfg), 0);
	int port = zk_http_server_port(srv);
	zk_http_server_free(srv);
	/* Its port is free again. */
	int again = zk_tcp_listen("127.0.0.1", (uint16_t)port, 4);
	ZT_CHECK(again >= 0);
	zk_close(again);
	return NULL;
}

Test(cov_http, server_create_run_stop_and_free_follow_their_contracts)
{
	zk_runtime_t *rt = zt_runtime(2);
	zt_run(rt, server_lifecycle, NULL);
	zk_runtime_free(rt);
}

static void *stop_then_run(void *arg)
{
	(void)arg;
	zk_http_server_config_t cfg;
	memset(&cfg, 0, sizeof(cfg));
	cfg.host = "127.0.0.1";
	cfg.handler = hello;
	zk_http_server_t *srv = NULL;
	ZT_CHECK_EQ(zk_http_server_create(&srv, &cfg), 0);
	ZT_CHECK_EQ(zk_http_server_stop(srv), 0);
	/* http.h: run serves "until zk_http_server_stop(); then waits for
	 * every connection to finish and returns 0"; stop may be called
	 * from any thread at any time, so also before run. */
	ZT_CHECK_EQ(zk_http_server_run(srv), 0);
	zk_http_server_free(srv);
	return NULL;
}

/* zk_http_server_run after zk_http_server_stop: run cancels the acceptor
 * before it starts and returns 0 (a normal stop), and frees nothing twice
 * or never (ASan). */
Test(cov_http, a_server_stopped_before_it_runs_returns_0_from_run)
{
	zk_runtime_t *rt = zt_runtime(1);
	zt_run(rt, stop_then_run, NULL);
	zk_runtime_free(rt);
}

/* ---- the chunked decoder's error paths ------------------------------------------------------ */

/* Decodes all of in (one byte per call when bytewise, to cross every state
 * boundary); collects the data; returns the first error, or the bytes
 * consumed. */
static ssize_t decode_all(const char *in, size_t max_data, bool bytewise, char *out, size_t *outlen,
			  bool *done)
{
	zk_http_chunked_t d;
	memset(&d, 0, sizeof(d));
	size_t len = strlen(in), pos = 0, o = 0;
	while (pos < len && !d.done) {
		size_t avail = bytewise ? 1 : len - pos;
		const char *data = NULL;
		size_t dl = 0;
		ssize_t r = zk_http_chunked_decode(&d, in + pos, avail, max_data, &data, &dl);
		if (r < 0)
			return r;
		cr_assert(dl <= max_data);
		if (dl) {
			memcpy(out + o, data, dl);
			o += dl;
		}
		pos += (size_t)r;
		if (r == 0 && dl == 0)
			break; /* no progress */
	}
	*outlen = o;
	*done = d.done;
	return (ssize_t)pos;
}

Test(cov_http, chunked_decoder_accepts_whitespace_before_an_extension_and_rejects_broken_framing)
{
	char out[64];
	size_t ol;
	bool done;
	for (int bw = 0; bw < 2; bw++) {
		/* Whitespace after the size, then an extension; data delivered in
		 * pieces of at most 2 bytes. */
		const char *ok = "5 \t;name=v\r\nhello\r\n3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n";
		cr_assert_eq(decode_all(ok, 2, bw, out, &ol, &done), (ssize_t)strlen(ok));
		cr_assert(done);
		cr_assert_eq(ol, 8);
		cr_assert(memcmp(out, "helloabc", 8) == 0);

		const char *bad[] = {
			"5 x\r\nhello\r\n0\r\n\r\n",        /* junk after size whitespace */
			"5\rXhello\r\n0\r\n\r\n",           /* CR without LF after the size */
			"5\r\nhello\rX0\r\n\r\n",           /* CR without LF after the data */
			"0\r\nX-T: a\001b\r\n\r\n",         /* control byte in a trailer */
			"0\r\nX-T: 1\rX\r\n",               /* trailer CR without LF */
			"0\r\n\rX",                         /* final CR without LF */
		};
		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
			cr_assert_eq(decode_all(bad[i], 64, bw, out, &ol, &done), -EBADMSG,
				     "case %zu bytewise %d", i, bw);
	}
	/* max_data 0: nothing can be delivered, nothing past the size line is
	 * consumed. */
	zk_http_chunked_t d;
	memset(&d, 0, sizeof(d));
	const char *data = NULL;
	size_t dl = 7;
	ssize_t r = zk_http_chunked_decode(&d, "3\r\nabc\r\n", 8, 0, &data, &dl);
	cr_assert_eq(r, 3);
	cr_assert_eq(dl, 0);
	cr_assert(!d.done);
	/* A trailer section above 8 KiB. */
	size_t big = 9000;
	char *tr = malloc(big + 16);
	memcpy(tr, "0\r\n", 3);
	size_t p = 3;
	while (p < big) {
		memcpy(tr + p, "X-Long: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n", 50);
		p += 50;
	}
	tr[p] = 0;
	cr_assert_eq(decode_all(tr, 64, false, out, &ol, &done), -EMSGSIZE);
	free(tr);
}
