/* lib/metrics_server.c — the metrics socket: a runtime task that accepts on
 * a Unix stream socket and answers each request line with one JSON document
 * ("json": a snapshot with per-worker figures; "dump": the task dump), for
 * tools/zk-top and scripts.
 *
 * Off by default. zk_metrics_serve() starts it; so does ZK_METRICS_SOCK in
 * the environment when the process's first runtime starts ("%p" in it
 * becomes the process id, so several processes can share one setting). The server and each
 * connection are ordinary tasks: they suspend in zk_accept/zk_recv like any
 * other, and shutdown cancels them like any other. The listening socket is
 * owned by the accept task, which closes it (and unlinks the path) when it
 * ends. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"
#include "zokio/fs.h"
#include "zokio/metrics.h"
#include "zokio/net.h"

/* Longest request line; longer ones are answered with an error. */
#define MAX_LINE 256

struct server {
	zk_runtime_t *rt;
	int lfd;
	char path[108];
};

static void answer(int fd, const char *doc, size_t len)
{
	zk_send_all(fd, doc, len);
	zk_send_all(fd, "\n", 1);
}

static void answer_err(int fd, const char *msg)
{
	char buf[160];
	int n = snprintf(buf, sizeof(buf), "{\"error\":\"%s\"}", msg);
	answer(fd, buf, (size_t)n);
}

/* Handles one request; false ends the connection. */
static bool handle(zk_runtime_t *rt, int fd, const char *line)
{
	char *doc = NULL;
	size_t len = 0;
	if (strcmp(line, "json") == 0 || strcmp(line, "") == 0) {
		zk_metrics_t m;
		if (zk_metrics_snapshot(rt, &m) < 0) {
			answer_err(fd, "no memory");
			return true;
		}
		int r = zk_metrics_json(&m, true, &doc, &len);
		zk_metrics_free(&m);
		if (r < 0) {
			answer_err(fd, "no memory");
			return true;
		}
	} else if (strcmp(line, "dump") == 0) {
		if (zk_task_dump_json(rt, &doc, &len) < 0) {
			answer_err(fd, "no memory");
			return true;
		}
	} else if (strcmp(line, "quit") == 0) {
		return false;
	} else {
		answer_err(fd, "unknown request: use json, dump or quit");
		return true;
	}
	answer(fd, doc, len);
	free(doc);
	return true;
}

static void *conn_main(void *arg)
{
	int fd = (int)(intptr_t)arg;
	zk_runtime_t *rt = zk_runtime_current();
	char buf[MAX_LINE + 1];
	size_t have = 0;
	for (;;) {
		ssize_t n = zk_recv(fd, buf + have, MAX_LINE - have, 0);
		if (n <= 0)
			break;
		have += (size_t)n;
		char *nl;
		bool more = true;
		while (more && (nl = memchr(buf, '\n', have))) {
			*nl = '\0';
			if (nl > buf && nl[-1] == '\r')
				nl[-1] = '\0';
			more = handle(rt, fd, buf);
			size_t used = (size_t)(nl + 1 - buf);
			memmove(buf, nl + 1, have - used);
			have -= used;
		}
		if (!more)
			break;
		if (have == MAX_LINE) {
			answer_err(fd, "request too long");
			break;
		}
	}
	zk_close(fd);
	return NULL;
}

static void *server_main(void *arg)
{
	struct server *s = arg;
	for (;;) {
		int fd = zk_accept(s->lfd, NULL, NULL);
		if (fd < 0) {
			if (fd == -ECANCELED || fd == -EBADF || fd == -EINVAL)
				break;
			continue; /* -EMFILE, -ECONNABORTED, ...: keep serving */
		}
		if (zk_spawn(NULL, conn_main, (void *)(intptr_t)fd) < 0)
			zk_close(fd);
	}
	zk_close(s->lfd);
	if (s->path[0] && s->path[0] != '@')
		unlink(s->path);
	atomic_store_explicit(&s->rt->obs.serving, false, memory_order_release);
	free(s);
	return NULL;
}

int zk_metrics_serve(zk_runtime_t *rt, const char *path)
{
	if (!rt || !path || !*path || strlen(path) >= sizeof(((struct server *)0)->path))
		return -EINVAL;
	if (!zk_metrics_enabled())
		return -ENOTSUP;
	bool no = false;
	if (!atomic_compare_exchange_strong(&rt->obs.serving, &no, true))
		return -EBUSY;
	struct server *s = calloc(1, sizeof(*s));
	int r = -ENOMEM;
	if (!s)
		goto fail;
	s->rt = rt;
	snprintf(s->path, sizeof(s->path), "%s", path);
	if (path[0] != '@')
		unlink(path); /* a socket left by an earlier run */
	s->lfd = zk_unix_listen(path, 16);
	if (s->lfd < 0) {
		r = s->lfd;
		goto fail;
	}
	r = zk_spawn_on(rt, NULL, server_main, s);
	if (r < 0) {
		close(s->lfd);
		if (path[0] != '@')
			unlink(path);
		goto fail;
	}
	return 0;
fail:
	free(s);
	atomic_store_explicit(&rt->obs.serving, false, memory_order_release);
	return r;
}

/* Set once a runtime of this process took ZK_METRICS_SOCK: later runtimes
 * do not take the path over from it. */
static _Atomic bool env_taken;

void zk__metrics_server_autostart(zk_runtime_t *rt)
{
	const char *v = getenv("ZK_METRICS_SOCK");
	if (!v || !*v || atomic_exchange(&env_taken, true))
		return;
	char path[108];
	size_t o = 0;
	for (const char *c = v; *c && o + 1 < sizeof(path); c++) {
		if (c[0] == '%' && c[1] == 'p') {
			o += (size_t)snprintf(path + o, sizeof(path) - o, "%ld", (long)getpid());
			if (o >= sizeof(path))
				o = sizeof(path) - 1;
			c++;
		} else {
			path[o++] = *c;
		}
	}
	path[o] = '\0';
	int r = zk_metrics_serve(rt, path);
	if (r < 0)
		fprintf(stderr, "zokio: ZK_METRICS_SOCK=%s: %s\n", v, strerror(-r));
}
