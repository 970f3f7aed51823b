/* tests/test_http_server.c — http.h's server over real sockets on
 * 127.0.0.1: keep-alive, pipelining, HEAD, Connection: close, HTTP/1.0,
 * request bodies (Content-Length, chunked, Expect: 100-continue), chunked
 * responses, every limit's status code, slowloris and idle timeouts,
 * max_connections, graceful stop, and many concurrent keep-alive
 * connections each getting its own bytes.
 *
 * The server runs in a runtime driven by a helper thread (zk_block_on);
 * the clients are plain blocking sockets with a receive timeout, so a
 * server that fails to answer fails the test instead of hanging it. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "helpers.h"

TestSuite(http_server, .timeout = 60);

/* ---- the server under test ----------------------------------------------------- */

static int handler(zk_http_conn_t *c, const zk_http_request_t *req, void *ctx)
{
	(void)ctx;
	char target[256];
	size_t tl = req->target_len < sizeof(target) - 1 ? req->target_len : sizeof(target) - 1;
	memcpy(target, req->target, tl);
	target[tl] = 0;
	if (strcmp(target, "/hello") == 0)
		return zk_http_respond(c, 200, "text/plain", "hello world", 11);
	if (strcmp(target, "/echo") == 0) {
		char *buf = malloc(1 << 20);
		size_t got = 0;
		ssize_t n;
		while ((n = zk_http_read_body(c, buf + got, (1 << 20) - got)) > 0)
			got += (size_t)n;
		int r = n == -EFBIG ? zk_http_respond(c, 413, NULL, NULL, 0)
		      : n < 0       ? zk_http_respond(c, 400, NULL, NULL, 0)
				    : zk_http_respond(c, 200, NULL, buf, got);
		free(buf);
		return r;
	}
	if (strcmp(target, "/chunked") == 0) {
		zk_http_begin(c, 200);
		zk_http_chunked_begin(c);
		zk_http_chunk(c, "one,", 4);
		zk_http_chunk(c, "two,", 4);
		zk_http_chunk(c, "three", 5);
		return zk_http_chunked_end(c);
	}
	if (strcmp(target, "/slow") == 0) {
		zk_sleep_ms(300);
		return zk_http_respond(c, 200, NULL, "slow", 4);
	}
	if (strcmp(target, "/nothing") == 0)
		return 0; /* the server answers 500 */
	if (strcmp(target, "/close") == 0) {
		zk_http_close_after(c);
		return zk_http_respond(c, 200, NULL, "bye", 3);
	}
	if (strcmp(target, "/nocontent") == 0)
		return zk_http_respond(c, 204, NULL, NULL, 0);
	if (strncmp(target, "/big/", 5) == 0) {
		size_t n = (size_t)atol(target + 5);
		char *b = malloc(n ? n : 1);
		zt_fill(b, n, 7);
		int r = zk_http_respond(c, 200, NULL, b, n);
		free(b);
		return r;
	}
	/* Anything else: the target back, so order can be checked. */
	return zk_http_respond(c, 200, NULL, target, tl);
}

struct server {
	zk_runtime_t *rt;
	zk_http_server_t *srv;
	pthread_t thread;
	int port;
	int run_res;
};

static void *run_task(void *arg)
{
	struct server *s = arg;
	s->run_res = zk_http_server_run(s->srv);
	return NULL;
}

static void *server_thread(void *arg)
{
	struct server *s = arg;
	void *res;
	zk_block_on(s->rt, run_task, s, &res);
	return NULL;
}

static struct server *start(zk_http_server_config_t *cfg)
{
	struct server *s = calloc(1, sizeof(*s));
	cr_assert_not_null(s);
	s->rt = zt_runtime(2);
	cfg->host = "127.0.0.1";
	cfg->handler = handler;
	int r = zk_http_server_create(&s->srv, cfg);
	cr_assert_eq(r, 0, "create: %d", r);
	s->port = zk_http_server_port(s->srv);
	cr_assert_gt(s->port, 0);
	s->run_res = 1;
	cr_assert_eq(pthread_create(&s->thread, NULL, server_thread, s), 0);
	return s;
}

static struct server *start_default(void)
{
	zk_http_server_config_t cfg = {0};
	return start(&cfg);
}

static void stop(struct server *s)
{
	cr_assert_eq(zk_http_server_stop(s->srv), 0);
	pthread_join(s->thread, NULL);
	cr_assert_eq(s->run_res, 0, "run returned %d", s->run_res);
	zk_http_server_free(s->srv);
	zk_runtime_free(s->rt);
	free(s);
}

/* ---- a blocking client ----------------------------------------------------------- */

static int client(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert_geq(fd, 0);
	struct timeval tv = {.tv_sec = 10};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0, "connect: %s",
		     strerror(errno));
	return fd;
}

static void send_str(int fd, const char *s)
{
	size_t n = strlen(s);
	cr_assert_eq(send(fd, s, n, MSG_NOSIGNAL), (ssize_t)n);
}

struct resp {
	int status;
	char head[4096];
	char *body;
	size_t body_len;
	bool eof;      /* the connection was closed instead of a response */
};

/* Reads exactly n bytes (already-buffered ones first). */
struct reader {
	int fd;
	char buf[65536];
	size_t pos, len;
};

static bool rd_fill(struct reader *r)
{
	if (r->pos == r->len)
		r->pos = r->len = 0;
	ssize_t n = recv(r->fd, r->buf + r->len, sizeof(r->buf) - r->len, 0);
	if (n <= 0)
		return false;
	r->len += (size_t)n;
	return true;
}

static bool rd_line(struct reader *r, char *out, size_t cap)
{
	size_t o = 0;
	for (;;) {
		while (r->pos < r->len) {
			char ch = r->buf[r->pos++];
			if (o + 1 < cap)
				out[o++] = ch;
			if (ch == '\n') {
				out[o] = 0;
				return true;
			}
		}
		if (!rd_fill(r))
			return false;
	}
}

static bool rd_bytes(struct reader *r, char *out, size_t n)
{
	size_t o = 0;
	while (o < n) {
		if (r->pos == r->len && !rd_fill(r))
			return false;
		size_t k = r->len - r->pos < n - o ? r->len - r->pos : n - o;
		memcpy(out + o, r->buf + r->pos, k);
		r->pos += k;
		o += k;
	}
	return true;
}

static const char *hdr(const struct resp *rp, const char *name, char *out, size_t cap)
{
	char key[64];
	snprintf(key, sizeof(key), "\n%s:", name);
	const char *p = strcasestr(rp->head, key);
	if (!p)
		return NULL;
	p += strlen(key);
	while (*p == ' ')
		p++;
	size_t n = strcspn(p, "\r\n");
	if (n >= cap)
		n = cap - 1;
	memcpy(out, p, n);
	out[n] = 0;
	return out;
}

/* Reads one response; head_only for responses to HEAD. */
static void read_resp(struct reader *r, struct resp *rp, bool head_only)
{
	memset(rp, 0, sizeof(*rp));
	char line[4096];
	if (!rd_line(r, line, sizeof(line))) {
		rp->eof = true;
		return;
	}
	cr_assert_eq(sscanf(line, "HTTP/1.1 %d", &rp->status), 1, "status line: %s", line);
	size_t hl = 0;
	for (;;) {
		cr_assert(rd_line(r, line, sizeof(line)), "head cut");
		if (strcmp(line, "\r\n") == 0)
			break;
		size_t ln = strlen(line);
		cr_assert_lt(hl + ln + 1, sizeof(rp->head));
		memcpy(rp->head + 1 + hl, line, ln);
		rp->head[0] = '\n';
		hl += ln;
		rp->head[hl + 1] = 0;
	}
	/* Every line in head is "\r\n"-terminated: make "\n" searchable. */
	char v[64];
	if (head_only || rp->status == 204 || rp->status == 304)
		return;
	if (hdr(rp, "Transfer-Encoding", v, sizeof(v))) {
		cr_assert_str_eq(v, "chunked");
		rp->body = malloc(1 << 20);
		for (;;) {
			cr_assert(rd_line(r, line, sizeof(line)));
			size_t n = strtoul(line, NULL, 16);
			if (n == 0) {
				cr_assert(rd_line(r, line, sizeof(line)));
				cr_assert_str_eq(line, "\r\n");
				break;
			}
			cr_assert(rd_bytes(r, rp->body + rp->body_len, n));
			rp->body_len += n;
			cr_assert(rd_line(r, line, sizeof(line)));
		}
		return;
	}
	cr_assert_not_null(hdr(rp, "Content-Length", v, sizeof(v)), "no length: %s", rp->head);
	rp->body_len = strtoul(v, NULL, 10);
	rp->body = malloc(rp->body_len + 1);
	cr_assert(rd_bytes(r, rp->body, rp->body_len), "body cut");
	rp->body[rp->body_len] = 0;
}

static void free_resp(struct resp *rp)
{
	free(rp->body);
	rp->body = NULL;
}

/* After a response that said Connection: close, the server closes. */
static bool at_eof(struct reader *r)
{
	return r->pos == r->len && !rd_fill(r);
}

/* One request on a fresh connection; returns its status. */
static int one_status(int port, const char *req)
{
	int fd = client(port);
	struct reader r = {.fd = fd};
	send_str(fd, req);
	struct resp rp;
	read_resp(&r, &rp, false);
	int st = rp.eof ? -1 : rp.status;
	char v[64];
	if (!rp.eof && st >= 400)
		cr_assert(hdr(&rp, "Connection", v, sizeof(v)) && strcmp(v, "close") == 0,
			  "errors close the connection: %s", rp.head);
	free_resp(&rp);
	close(fd);
	return st;
}

/* ---- tests ----------------------------------------------------------------------------- */

Test(http_server, keep_alive_serves_requests_in_turn)
{
	struct server *s = start_default();
	int fd = client(s->port);
	struct reader r = {.fd = fd};
	for (int i = 0; i < 3; i++) {
		send_str(fd, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
		struct resp rp;
		read_resp(&r, &rp, false);
		cr_assert_eq(rp.status, 200, "status %d eof %d", rp.status, (int)rp.eof);
		cr_assert_eq(rp.body_len, 11);
		cr_assert_str_eq(rp.body, "hello world");
		char v[64];
		cr_assert_not_null(hdr(&rp, "Date", v, sizeof(v)));
		cr_assert(strstr(v, " GMT") != NULL);
		cr_assert_str_eq(hdr(&rp, "Server", v, sizeof(v)), "zokio");
		cr_assert_str_eq(hdr(&rp, "Content-Type", v, sizeof(v)), "text/plain");
		cr_assert_null(hdr(&rp, "Connection", v, sizeof(v)));
		free_resp(&rp);
	}
	close(fd);
	stop(s);
}

Test(http_server, pipelined_requests_are_answered_in_order)
{
	struct server *s = start_default();
	int fd = client(s->port);
	struct reader r = {.fd = fd};
	char burst[8192];
	size_t n = 0;
	for (int i = 0; i < 50; i++)
		n += (size_t)snprintf(burst + n, sizeof(burst) - n,
				      "GET /req-%d HTTP/1.1\r\nHost: x\r\n\r\n", i);
	send_str(fd, burst);
	for (int i = 0; i < 50; i++) {
		struct resp rp;
		read_resp(&r, &rp, false);
		char want[32];
		snprintf(want, sizeof(want), "/req-%d", i);
		cr_assert_eq(rp.status, 200, "request %d: status %d eof %d", i, rp.status, (int)rp.eof);
		cr_assert_str_eq(rp.body, want);
		free_resp(&rp);
	}
	close(fd);
	stop(s);
}

Test(http_server, connection_close_and_http_1_0)
{
	struct server *s = start_default();
	char v[64];
	struct resp rp;
	/* Connection: close from the client. */
	int fd = client(s->port);
	struct reader r = {.fd = fd};
	send_str(fd, "GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
		     "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
	read_resp(&r, &rp, false);
	cr_assert_eq(rp.status, 200, "status %d eof %d", rp.status, (int)rp.eof);
	cr_assert_str_eq(hdr(&rp, "Connection", v, sizeof(v)), "close");
	free_resp(&rp);
	cr_assert(at_eof(&r), "nothing after a close, even if pipelined");
	close(fd);
	/* HTTP/1.0 without keep-alive closes; with it, stays. */
	fd = client(s->port);
	r = (struct reader){.fd = fd};
	send_str(fd, "GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
	read_resp(&r, &rp, false);
	cr_assert_str_eq(hdr(&rp, "Connection", v, sizeof(v)), "keep-alive");
	free_resp(&rp);
	send_str(fd, "GET /hello HTTP/1.0\r\n\r\n");
	read_resp(&r, &rp, false);
	cr_assert_eq(rp.status, 200, "status %d eof %d", rp.status, (int)rp.eof);
	cr_assert_str_eq(hdr(&rp, "Connection", v, sizeof(v)), "close");
	free_resp(&rp);
	cr_assert(at_eof(&r));
	close(fd);
	/* The handler asks to close. */
	fd = client(s->port);
	r = (struct reader){.fd = fd};
	send_str(fd, "GET /close HTTP/1.1\r\nHost: x\r\n\r\n");
	read_resp(&r, &rp, false);
	cr_assert_str_eq(rp.body, "bye");
	cr_assert_str_eq(hdr(&rp, "Connection", v, sizeof(v)), "close");
	free_resp(&rp);
	cr_assert(at_eof(&r));
	close(fd);
	stop(s);
}

Test(http_server, head_gets_the_length_without_the_body)
{
	struct server *s = start_default();
	int fd = client(s->port);
	struct reader r = {.fd = fd};
	send_str(fd, "HEAD /hello HTTP/1.1\r\nHost: x\r\n\r\nGET /next HTTP/1.1\r\nHost: x\r\n\r\n");
	struct resp rp;
	read_resp(&r, &rp, true);
	char v[64];
	cr_assert_eq(rp.status, 200, "status %d eof %d", rp.status, (int)rp.eof);
	cr_assert_str_eq(hdr(&rp, "Content-Length", v, sizeof(v)), "11");
	read_resp(&r, &rp, false);
	cr_assert_str_eq(rp.body, "/next", "no body bytes were sent for HEAD");
	free_resp(&rp);
	/* HEAD of a chunked response: the head only, no chunks. */
	send_str(fd, "HEAD /chunked HTTP/1.1\r\nHost: x\r\n\r\nGET /next2 HTTP/1.1\r\nHost: x\r\n\r\n");
	read_resp(&r, &rp, true);
	cr_assert_eq(rp.status, 200, "status %d eof %d", rp.status, (int)rp.eof);
	cr_assert_str_eq(hdr(&rp, "Transfer-Encoding", v, sizeof(v)), "chunked");
	read_resp(&r, &rp, false);
	cr_assert_str_eq(rp.body, "/next2", "no chunk was sent for HEAD");
	free_resp(&rp);
	/* 204 has neither body nor Content-Length. */
	send_str(fd, "GET /nocontent HTTP/1.1\r\nHost: x\r\n\r\n");
	read_resp(&r, &rp, false);
	cr_assert_eq(rp.status, 204);
	cr_assert_null(hdr(&rp, "Content-Length", v, sizeof(v)));
	close(fd);
	stop(s);
}

Test(http_server, handler_without_response_gets_500)
{
	struct server *s = start_default();
	int fd = client(s->port);
	struct reader r = {.fd = fd};
	send_str(fd, "GET /nothing HTTP/1.1\r\nHost: x\r\n\r\nGET /after HTTP/1.1\r\nHost: x\r\n\r\n");
	struct resp rp;
	read_resp(&r, &rp, false);
	cr_assert_eq(rp.status, 500);
	free_resp(&rp);
	read_resp(&r, &rp, false);
	cr_assert_str_eq(rp.body, "/after", "the connection goes on");
	free_resp(&rp);
	close(fd);
	stop(s);
}

Test(http_server, bad_requests_get_their_status_and_a_close)
{
	zk_http_server_config_t cfg = {.limits = {.max_request_line = 256, .max_head = 1024},
				       .max_body = 1000};
	struct server *s = start(&cfg);
	cr_assert_eq(one_status(s->port, "GET / HTTP/1.1\nHost: x\r\n\r\n"), 400);
	cr_assert_eq(one_status(s->port, "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n"
					 "Transfer-Encoding: chunked\r\n\r\n"), 400);
	cr_assert_eq(one_status(s->port, "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n"
					 "Content-Length: 1\r\n\r\n"), 400);
	cr_assert_eq(one_status(s->port, "GET / HTTP/2.0\r\nHost: x\r\n\r\n"), 505);
	cr_assert_eq(one_status(s->port, "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, "
					 "chunked\r\n\r\n"), 501);
	cr_assert_eq(one_status(s->port, "POST /echo HTTP/1.1\r\nHost: x\r\n"
					 "Content-Length: 5000\r\n\r\n"), 413);
	char line[600];
	snprintf(line, sizeof(line), "GET /%0400d HTTP/1.1\r\nHost: x\r\n\r\n", 0);
	cr_assert_eq(one_status(s->port, line), 414);
	char big[2000];
	snprintf(big, sizeof(big), "GET / HTTP/1.1\r\nHost: x\r\nX: %01500d\r\n\r\n", 0);
	cr_assert_eq(one_status(s->port, big), 431);
	stop(s);
}

Test(http_server, request_bodies_content_length_chunked_and_100_continue)
{
	zk_http_server_config_t cfg = {.max_body = 100000};
	struct server *s = start(&cfg);
	int fd = client(s->port);
	struct reader r = {.fd = fd};
	struct resp rp;
	send_str(fd, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello");
	read_resp(&r, &rp, false);
	cr_assert_str_eq(rp.body, "hello");
	free_resp(&rp);
	send_str(fd, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
		     "3\r\nabc\r\n4;x=y\r\ndefg\r\n0\r\nT: v\r\n\r\n");
	read_resp(&r, &rp, false);
	cr_assert_str_eq(rp.body, "abcdefg");
	free_resp(&rp);
	/* Expect: 100-continue: the interim response comes before we send. */
	send_str(fd, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
		     "Expect: 100-continue\r\n\r\n");
	char line[256];
	cr_assert(rd_line(&r, line, sizeof(line)));
	cr_assert_str_eq(line, "HTTP/1.1 100 Continue\r\n");
	cr_assert(rd_line(&r, line, sizeof(line)));
	cr_assert_str_eq(line, "\r\n");
	send_str(fd, "data");
	read_resp(&r, &rp, false);
	cr_assert_eq(rp.status, 200, "status %d eof %d", rp.status, (int)rp.eof);
	cr_assert_str_eq(rp.body, "data");
	free_resp(&rp);
	/* A body the handler does not read is skipped, not parsed as a request. */
	const char *inner = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
	char outer[256];
	snprintf(outer, sizeof(outer), "POST /unread HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n\r\n%s",
		 strlen(inner), inner);
	send_str(fd, outer);
	send_str(fd, "GET /after HTTP/1.1\r\nHost: x\r\n\r\n");
	read_resp(&r, &rp, false);
	cr_assert(!rp.eof);
	cr_assert_eq(rp.status, 200, "status %d eof %d", rp.status, (int)rp.eof);
	cr_assert_str_eq(rp.body, "/unread");
	free_resp(&rp);
	read_resp(&r, &rp, false);
	cr_assert_str_eq(rp.body, "/after");
	free_resp(&rp);
	close(fd);
	stop(s);
}

Test(http_server, unread_100_continue_body_is_never_requested_and_the_connection_closes)
{
	struct server *s = start_default();
	int fd = client(s->port);
	struct reader r = {.fd = fd};
	send_str(fd, "POST /hello HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
		     "Expect: 100-continue\r\n\r\n");
	struct resp rp;
	read_resp(&r, &rp, false);
	cr_assert_eq(rp.status, 200, "the final response, no 100 Continue first");
	char v[64];
	cr_assert_str_eq(hdr(&rp, "Connection", v, sizeof(v)), "close");
	free_resp(&rp);
	cr_assert(at_eof(&r));
	close(fd);
	stop(s);
}

Test(http_server, chunked_body_above_max_body_is_refused)
{
	zk_http_server_config_t cfg = {.max_body = 10};
	struct server *s = start(&cfg);
	int fd = client(s->port);
	struct reader r = {.fd = fd};
	send_str(fd, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
		     "8\r\n01234567\r\n8\r\n01234567\r\n0\r\n\r\n");
	struct resp rp;
	read_resp(&r, &rp, false);
	cr_assert_eq(rp.status, 413);
	free_resp(&rp);
	close(fd);
	stop(s);
}

Test(http_server, chunked_and_large_responses_arrive_whole)
{
	struct server *s = start_default();
	int fd = client(s->port);
	struct reader r = {.fd = fd};
	struct resp rp;
	send_str(fd, "GET /chunked HTTP/1.1\r\nHost: x\r\n\r\n");
	read_resp(&r, &rp, false);
	cr_assert_eq(rp.body_len, 13);
	cr_assert_eq(memcmp(rp.body, "one,two,three", 13), 0);
	free_resp(&rp);
	send_str(fd, "GET /big/300000 HTTP/1.1\r\nHost: x\r\n\r\n");
	read_resp(&r, &rp, false);
	cr_assert_eq(rp.body_len, 300000, "status %d, head %s", rp.status, rp.head);
	cr_assert(zt_check_fill(rp.body, rp.body_len, 7, 0));
	free_resp(&rp);
	close(fd);
	stop(s);
}

Test(http_server, slowloris_is_closed_with_408)
{
	zk_http_server_config_t cfg = {.head_timeout_ns = 300 * ZK_NSEC_PER_MSEC};
	struct server *s = start(&cfg);
	int fd = client(s->port);
	struct reader r = {.fd = fd};
	const char *req = "GET /hello HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
	/* One byte every 50 ms: each recv is quick, the head never ends in
	 * time. The server must cut us off before we are done. */
	bool cut = false;
	for (size_t i = 0; req[i]; i++) {
		if (send(fd, req + i, 1, MSG_NOSIGNAL) != 1) {
			cut = true;
			break;
		}
		zt_msleep(50);
	}
	struct resp rp;
	read_resp(&r, &rp, false);
	cr_assert(cut || !rp.eof);
	if (!rp.eof) {
		cr_assert_eq(rp.status, 408);
		free_resp(&rp);
	}
	cr_assert(at_eof(&r));
	close(fd);
	stop(s);
}

Test(http_server, idle_keep_alive_connection_is_closed_after_idle_timeout)
{
	zk_http_server_config_t cfg = {.idle_timeout_ns = 200 * ZK_NSEC_PER_MSEC};
	struct server *s = start(&cfg);
	int fd = client(s->port);
	struct reader r = {.fd = fd};
	send_str(fd, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
	struct resp rp;
	read_resp(&r, &rp, false);
	cr_assert_eq(rp.status, 200, "status %d eof %d", rp.status, (int)rp.eof);
	free_resp(&rp);
	cr_assert(at_eof(&r), "closed by the server (not by our 10 s receive timeout)");
	close(fd);
	stop(s);
}

Test(http_server, idle_timeout_counts_from_the_last_request_not_the_first)
{
	/* Read timeouts are swept, not armed per recv: a connection whose
	 * requests keep coming stays open well past idle_timeout. */
	zk_http_server_config_t cfg = {.idle_timeout_ns = 300 * ZK_NSEC_PER_MSEC};
	struct server *s = start(&cfg);
	int fd = client(s->port);
	struct reader r = {.fd = fd};
	for (int i = 0; i < 8; i++) {
		send_str(fd, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
		struct resp rp;
		read_resp(&r, &rp, false);
		cr_assert_eq(rp.status, 200, "request %d: status %d eof %d", i, rp.status, (int)rp.eof);
		free_resp(&rp);
		zt_msleep(100);
	}
	cr_assert(at_eof(&r), "closed once idle");
	close(fd);
	stop(s);
}

Test(http_server, max_connections_holds_further_clients_in_the_backlog)
{
	zk_http_server_config_t cfg = {.max_connections = 2};
	struct server *s = start(&cfg);
	int a = client(s->port), b = client(s->port);
	struct reader ra = {.fd = a}, rb = {.fd = b};
	struct resp rp;
	send_str(a, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
	send_str(b, "GET /b HTTP/1.1\r\nHost: x\r\n\r\n");
	read_resp(&ra, &rp, false);
	free_resp(&rp);
	read_resp(&rb, &rp, false);
	free_resp(&rp);
	int c = client(s->port); /* connects: the kernel's backlog takes it */
	struct reader rc = {.fd = c};
	send_str(c, "GET /c HTTP/1.1\r\nHost: x\r\n\r\n");
	struct timeval tv = {.tv_usec = 300000};
	setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	struct pollfd pfd = {.fd = c, .events = POLLIN};
	int pr;
	while ((pr = poll(&pfd, 1, 300)) < 0 && errno == EINTR)
		;
	cr_assert_eq(pr, 0, "not served while two are open");
	cr_assert_eq(zk_http_server_connections(s->srv), 2);
	close(a);
	tv.tv_sec = 10;
	tv.tv_usec = 0;
	setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	read_resp(&rc, &rp, false);
	cr_assert_str_eq(rp.body, "/c");
	free_resp(&rp);
	close(b);
	close(c);
	stop(s);
}

struct slow_client {
	int port;
	struct resp rp;
};

static void *slow_request(void *arg)
{
	struct slow_client *sc = arg;
	int fd = client(sc->port);
	struct reader r = {.fd = fd};
	send_str(fd, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n");
	read_resp(&r, &sc->rp, false);
	close(fd);
	return NULL;
}

Test(http_server, graceful_stop_finishes_requests_and_closes_idle_connections)
{
	struct server *s = start_default();
	/* An idle keep-alive connection. */
	int idle = client(s->port);
	struct reader ri = {.fd = idle};
	send_str(idle, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
	struct resp rp;
	read_resp(&ri, &rp, false);
	free_resp(&rp);
	/* A request in progress when the stop comes. */
	struct slow_client sc = {.port = s->port};
	pthread_t th;
	cr_assert_eq(pthread_create(&th, NULL, slow_request, &sc), 0);
	while (zk_http_server_connections(s->srv) < 2)
		zt_msleep(1);
	zt_msleep(50);
	stop(s); /* returns once every connection is gone */
	pthread_join(th, NULL);
	cr_assert_eq(sc.rp.status, 200, "in-flight request answered");
	cr_assert_str_eq(sc.rp.body, "slow");
	char v[64];
	cr_assert_str_eq(hdr(&sc.rp, "Connection", v, sizeof(v)), "close");
	free_resp(&sc.rp);
	cr_assert(at_eof(&ri), "idle connection closed");
	close(idle);
}

/* ---- many connections at once ----------------------------------------------------------- */

struct crowd {
	int port;
	zk_barrier_t all_open;
	atomic_long ok;
};

static bool task_request(int fd, const char *path, const char *want, char *buf, size_t cap)
{
	char req[128];
	int n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path);
	if (zk_send(fd, req, (size_t)n, 0) != n)
		return false;
	size_t got = 0;
	size_t wl = strlen(want);
	for (;;) {
		ssize_t k = zk_recv(fd, buf + got, cap - got - 1, 0);
		if (k <= 0)
			return false;
		got += (size_t)k;
		buf[got] = 0;
		char *end = strstr(buf, "\r\n\r\n");
		if (end && got >= (size_t)(end + 4 - buf) + wl)
			return strncmp(buf, "HTTP/1.1 200", 12) == 0 &&
			       got == (size_t)(end + 4 - buf) + wl && memcmp(end + 4, want, wl) == 0;
	}
}

static void *crowd_member(void *arg)
{
	struct crowd *cw = arg;
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/member-%llu", (unsigned long long)zk_task_id());
	int fd = zk_tcp_connect("127.0.0.1", (uint16_t)cw->port);
	bool ok = fd >= 0 && task_request(fd, path, path, buf, sizeof(buf));
	/* Everyone is connected and served once before anyone goes on. */
	zk_barrier_wait(&cw->all_open);
	ok = ok && task_request(fd, path, path, buf, sizeof(buf));
	if (ok)
		atomic_fetch_add(&cw->ok, 1);
	if (fd >= 0)
		zk_close(fd);
	return NULL;
}

struct crowd_run {
	struct crowd *cw;
	size_t n;
};

static void *crowd_main(void *arg)
{
	struct crowd_run *cr = arg;
	zk_task_t **h = calloc(cr->n, sizeof(*h));
	for (size_t i = 0; i < cr->n; i++)
		ZT_CHECK_EQ(zk_spawn(&h[i], crowd_member, cr->cw), 0);
	for (size_t i = 0; i < cr->n; i++)
		zk_join(h[i], NULL);
	free(h);
	return NULL;
}

Test(http_server, thousands_of_concurrent_keep_alive_connections_get_their_own_bytes)
{
	struct rlimit rl;
	getrlimit(RLIMIT_NOFILE, &rl);
	size_t n = zt_scaled(10000, 200);
	if (rl.rlim_cur < 2 * n + 200) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
		getrlimit(RLIMIT_NOFILE, &rl);
		if (rl.rlim_cur < 2 * n + 200)
			n = (rl.rlim_cur - 200) / 2;
	}
	zk_http_server_config_t cfg = {.backlog = 4096};
	struct server *s = start(&cfg);
	struct crowd cw = {.port = s->port};
	cr_assert_eq(zk_barrier_init(&cw.all_open, (unsigned)n), 0);
	zk_runtime_t *crt = zt_runtime(1);
	struct crowd_run run = {.cw = &cw, .n = n};
	zt_run(crt, crowd_main, &run);
	zk_runtime_free(crt);
	cr_assert_eq(atomic_load(&cw.ok), (long)n, "%ld of %zu connections correct",
		     atomic_load(&cw.ok), n);
	zk_barrier_destroy(&cw.all_open);
	stop(s);
}

/* ---- zk_sendfile ------------------------------------------------------------------------------ */

struct sf {
	char *dir;
	int file_fd;
	int sock[2];
	size_t size;
	ssize_t res[4];
};

static void *sendfile_task(void *arg)
{
	struct sf *s = arg;
	s->res[0] = zk_sendfile(s->sock[0], s->file_fd, 0, s->size);
	s->res[1] = zk_sendfile(s->sock[0], s->file_fd, 12345, 100000);
	/* Past the end: only what the file holds. */
	s->res[2] = zk_sendfile(s->sock[0], s->file_fd, (int64_t)s->size - 10, 1000);
	s->res[3] = zk_sendfile(s->sock[0], s->file_fd, -1, 10);
	zk_shutdown(s->sock[0], SHUT_WR);
	return NULL;
}

static void *sendfile_reader(void *arg)
{
	struct sf *s = arg;
	size_t want = s->size + 100000 + 10;
	char *buf = malloc(want + 1);
	size_t got = 0;
	ssize_t n;
	while ((n = recv(s->sock[1], buf + got, want + 1 - got, 0)) > 0)
		got += (size_t)n;
	bool ok = got == want && zt_check_fill(buf, s->size, 3, 0) &&
		  zt_check_fill(buf + s->size, 100000, 3, 12345) &&
		  zt_check_fill(buf + s->size + 100000, 10, 3, s->size - 10);
	free(buf);
	return (void *)(intptr_t)ok;
}

Test(http_server, sendfile_moves_file_ranges_to_a_socket)
{
	struct sf s = {.dir = zt_tmpdir(), .size = 3 * 1024 * 1024 + 17};
	char path[256];
	snprintf(path, sizeof(path), "%s/f", s.dir);
	int fd = open(path, O_CREAT | O_RDWR | O_CLOEXEC, 0600);
	cr_assert_geq(fd, 0);
	char *data = malloc(s.size);
	zt_fill(data, s.size, 3);
	cr_assert_eq(write(fd, data, s.size), (ssize_t)s.size);
	free(data);
	s.file_fd = fd;
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, s.sock), 0);
	pthread_t rd;
	cr_assert_eq(pthread_create(&rd, NULL, sendfile_reader, &s), 0);
	zk_runtime_t *rt = zt_runtime(2);
	zt_run(rt, sendfile_task, &s);
	void *ok;
	pthread_join(rd, &ok);
	cr_assert_eq(s.res[0], (ssize_t)s.size);
	cr_assert_eq(s.res[1], 100000);
	cr_assert_eq(s.res[2], 10, "a file shorter than asked: what it holds");
	cr_assert_eq(s.res[3], -EINVAL);
	cr_assert(ok, "every byte at its offset");
	cr_assert_eq(zk_sendfile(s.sock[0], fd, 0, 1), -EPERM, "outside a task");
	zk_runtime_free(rt);
	close(s.sock[0]);
	close(s.sock[1]);
	close(fd);
	zt_rmtree(s.dir);
}

static void *sendfile_stuck(void *arg)
{
	struct sf *s = arg;
	zk_timeout_next(200 * ZK_NSEC_PER_MSEC);
	/* Nobody reads sock[1]: the socket fills and the splice waits. */
	s->res[0] = zk_sendfile(s->sock[0], s->file_fd, 0, s->size);
	return NULL;
}

Test(http_server, sendfile_to_a_reader_that_never_reads_times_out)
{
	struct sf s = {.dir = zt_tmpdir(), .size = 16 * 1024 * 1024};
	char path[256];
	snprintf(path, sizeof(path), "%s/f", s.dir);
	int fd = open(path, O_CREAT | O_RDWR | O_CLOEXEC, 0600);
	cr_assert_geq(fd, 0);
	cr_assert_eq(ftruncate(fd, (off_t)s.size), 0);
	s.file_fd = fd;
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, s.sock), 0);
	zk_runtime_t *rt = zt_runtime(1);
	zt_run(rt, sendfile_stuck, &s);
	/* Either nothing went out (-ETIMEDOUT) or a part did (a short count). */
	cr_assert(s.res[0] == -ETIMEDOUT || (s.res[0] > 0 && s.res[0] < (ssize_t)s.size),
		  "res %zd", s.res[0]);
	zk_runtime_free(rt);
	close(s.sock[0]);
	close(s.sock[1]);
	close(fd);
	zt_rmtree(s.dir);
}
