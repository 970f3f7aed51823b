/* tests/test_cov2_obs.c — metrics.h's observability corners the metrics
 * suite leaves out: a task dump that names every kind of synchronisation
 * wait (channel send, notify, broadcast, watch, join set, a barrier shown as
 * "sync"), a runnable task, a spawn site that needs JSON escaping, the text
 * form of those waits; ZK_TASK_DUMP_AT_EXIT with nothing alive; the metrics
 * socket's argument errors, a socket it cannot bind (and serving again
 * afterwards), a runtime shut down before serving, the "quit", empty-line,
 * CRLF and too-long requests, and ZK_METRICS_SOCK with "%p" and with a
 * path it cannot bind. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "helpers.h"

TestSuite(cov2_obs, .timeout = 60);

#define MS ZK_NSEC_PER_MSEC

static void need_metrics(void)
{
	if (!zk_metrics_enabled())
		cr_skip_test("built with -Dmetrics=false");
}

/* ---- task dump ------------------------------------------------------------------------ */

struct waits {
	zk_chan_t *ch;
	zk_notify_t n, n2;
	zk_bcast_t *b;
	zk_bcast_rx_t brx;
	zk_watch_t *w;
	zk_watch_rx_t wrx;
	zk_joinset_t *js;
	zk_barrier_t bar;
	zk_notify_t weird_n;
};

static void *send_blocked(void *arg)
{
	struct waits *s = arg;
	ZT_CHECK_EQ(zk_chan_send(s->ch, (void *)2), 0);
	return NULL;
}

static void *notify_waiter(void *arg)
{
	struct waits *s = arg;
	ZT_CHECK_EQ(zk_notify_wait(&s->n), 0);
	return NULL;
}

static void *bcast_waiter(void *arg)
{
	struct waits *s = arg;
	void *v = NULL;
	uint64_t missed = 0;
	ZT_CHECK_EQ(zk_bcast_recv(&s->brx, &v, &missed), 0);
	ZT_CHECK_EQ((intptr_t)v, 5);
	return NULL;
}

static void *watch_waiter(void *arg)
{
	struct waits *s = arg;
	void *v = NULL;
	ZT_CHECK_EQ(zk_watch_changed(&s->wrx, &v), 0);
	ZT_CHECK_EQ((intptr_t)v, 6);
	return NULL;
}

static void *js_member(void *arg)
{
	struct waits *s = arg;
	ZT_CHECK_EQ(zk_notify_wait(&s->n2), 0);
	return (void *)7;
}

static void *js_waiter(void *arg)
{
	struct waits *s = arg;
	void *r = NULL;
	ZT_CHECK_EQ(zk_joinset_join_next(s->js, &r, NULL), 0);
	ZT_CHECK_EQ((intptr_t)r, 7);
	return NULL;
}

static void *barrier_waiter(void *arg)
{
	struct waits *s = arg;
	int r = zk_barrier_wait(&s->bar);
	ZT_CHECK(r == 0 || r == ZK_BARRIER_LEADER);
	return NULL;
}

static void *weird_site(void *arg)
{
	struct waits *s = arg;
	ZT_CHECK_EQ(zk_notify_wait(&s->weird_n), 0);
	return NULL;
}

static bool all_in(const char *doc, const char *const *want, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!strstr(doc, want[i]))
			return false;
	return true;
}

static void *dump_waits_main(void *arg)
{
	(void)arg;
	zk_runtime_t *rt = zk_runtime_current();
	struct waits s;
	memset(&s, 0, sizeof(s));
	ZT_CHECK_EQ(zk_chan_create(&s.ch, 1), 0);
	ZT_CHECK_EQ(zk_chan_try_send(s.ch, (void *)1), 0);
	ZT_CHECK_EQ(zk_notify_init(&s.n), 0);
	ZT_CHECK_EQ(zk_notify_init(&s.n2), 0);
	ZT_CHECK_EQ(zk_notify_init(&s.weird_n), 0);
	ZT_CHECK_EQ(zk_bcast_create(&s.b, 4), 0);
	ZT_CHECK_EQ(zk_bcast_subscribe(s.b, &s.brx), 0);
	ZT_CHECK_EQ(zk_watch_create(&s.w, NULL), 0);
	ZT_CHECK_EQ(zk_watch_subscribe(s.w, &s.wrx), 0);
	ZT_CHECK_EQ(zk_joinset_create(&s.js, rt), 0);
	ZT_CHECK_EQ(zk_joinset_spawn(s.js, js_member, &s, NULL), 0);
	ZT_CHECK_EQ(zk_barrier_init(&s.bar, 2), 0);

	zk_task_t *t[7];
	ZT_CHECK_EQ(zk_spawn(&t[0], send_blocked, &s), 0);
	ZT_CHECK_EQ(zk_spawn(&t[1], notify_waiter, &s), 0);
	ZT_CHECK_EQ(zk_spawn(&t[2], bcast_waiter, &s), 0);
	ZT_CHECK_EQ(zk_spawn(&t[3], watch_waiter, &s), 0);
	ZT_CHECK_EQ(zk_spawn(&t[4], js_waiter, &s), 0);
	ZT_CHECK_EQ(zk_spawn(&t[5], barrier_waiter, &s), 0);
	ZT_CHECK_EQ(zk_spawn_at(&t[6], weird_site, &s, "dir/we\"ird\\name.c", 42), 0);

	const char *const want[] = {
		"\"kind\":\"channel_send\"", "\"kind\":\"notify\"", "\"kind\":\"broadcast\"",
		"\"kind\":\"watch\"", "\"kind\":\"joinset\"", "\"kind\":\"sync\"",
		"\"spawn\":\"dir/we\\\"ird\\\\name.c:42\"",
	};
	bool seen = false;
	char *doc = NULL;
	for (int i = 0; i < 10000 && !seen; i++) {
		size_t len = 0;
		ZT_CHECK_EQ(zk_task_dump_json(rt, &doc, &len), 0);
		ZT_CHECK_EQ(len, strlen(doc));
		seen = all_in(doc, want, sizeof(want) / sizeof(want[0]));
		if (!seen) {
			free(doc);
			doc = NULL;
			zk_sleep_ms(1);
		}
	}
	ZT_CHECK(seen);
	if (!seen && doc)
		zt_fail(__FILE__, __LINE__, "dump: %s", doc);
	free(doc);

	/* The text form of the same waits. */
	char *text = NULL;
	size_t tlen = 0;
	FILE *f = open_memstream(&text, &tlen);
	ZT_CHECK(f != NULL);
	int listed = zk_task_dump(rt, f);
	fclose(f);
	ZT_CHECK(listed >= 8);
	ZT_CHECK(strstr(text, "channel_send object=") != NULL);
	ZT_CHECK(strstr(text, "sync object=") != NULL);
	free(text);

	/* Let everyone go. */
	void *v = NULL;
	ZT_CHECK_EQ(zk_chan_recv(s.ch, &v), 0);
	ZT_CHECK_EQ((intptr_t)v, 1);
	ZT_CHECK_EQ(zk_notify_all(&s.n), 1);
	ZT_CHECK_EQ(zk_bcast_send(s.b, (void *)5), 1);
	ZT_CHECK_EQ(zk_watch_send(s.w, (void *)6), 0);
	ZT_CHECK_EQ(zk_notify_all(&s.n2), 1);
	ZT_CHECK_EQ(zk_notify_all(&s.weird_n), 1);
	int br = zk_barrier_wait(&s.bar);
	ZT_CHECK(br == 0 || br == ZK_BARRIER_LEADER);
	for (int i = 0; i < 7; i++)
		ZT_CHECK_EQ(zk_join(t[i], NULL), 0);
	ZT_CHECK_EQ(zk_chan_recv(s.ch, &v), 0);
	ZT_CHECK_EQ((intptr_t)v, 2);

	zk_joinset_free(s.js);
	ZT_CHECK_EQ(zk_barrier_destroy(&s.bar), 0);
	zk_bcast_unsubscribe(&s.brx);
	zk_bcast_free(s.b);
	zk_watch_free(s.w);
	zk_chan_free(s.ch);
	zk_notify_destroy(&s.n);
	zk_notify_destroy(&s.n2);
	zk_notify_destroy(&s.weird_n);
	return NULL;
}

Test(cov2_obs, dump_names_every_sync_wait)
{
	need_metrics();
	zk_runtime_t *rt = zt_runtime(2);
	zt_run(rt, dump_waits_main, NULL);
	zk_runtime_free(rt);
}

static void *nothing(void *arg)
{
	return arg;
}

/* One worker: a task woken and not yet resumed is "runnable"; the dumping
 * task itself is "running" (tasks are listed from their first suspension,
 * which both have had). */
struct two_notes {
	zk_notify_t ready, go;
};

static void *wake_me_then_wait(void *arg)
{
	struct two_notes *tn = arg;
	ZT_CHECK_EQ(zk_notify_one(&tn->ready), 0);
	ZT_CHECK_EQ(zk_notify_wait(&tn->go), 0);
	return NULL;
}

static void *dump_runnable_main(void *arg)
{
	(void)arg;
	struct two_notes tn;
	ZT_CHECK_EQ(zk_notify_init(&tn.ready), 0);
	ZT_CHECK_EQ(zk_notify_init(&tn.go), 0);
	zk_task_t *t = NULL;
	ZT_CHECK_EQ(zk_spawn(&t, wake_me_then_wait, &tn), 0);
	/* One worker: we resume only once the other task has parked on go. */
	ZT_CHECK_EQ(zk_notify_wait(&tn.ready), 0);
	ZT_CHECK_EQ(zk_notify_one(&tn.go), 0);
	char *doc = NULL;
	ZT_CHECK_EQ(zk_task_dump_json(zk_runtime_current(), &doc, NULL), 0);
	ZT_CHECK(strstr(doc, "\"state\":\"runnable\"") != NULL);
	ZT_CHECK(strstr(doc, "\"state\":\"running\"") != NULL);
	if (zt_failures())
		zt_fail(__FILE__, __LINE__, "dump: %s", doc);
	free(doc);
	ZT_CHECK_EQ(zk_join(t, NULL), 0);
	zk_notify_destroy(&tn.ready);
	zk_notify_destroy(&tn.go);
	return NULL;
}

Test(cov2_obs, dump_shows_runnable_and_running)
{
	need_metrics();
	zk_runtime_t *rt = zt_runtime(1);
	zt_run(rt, dump_runnable_main, NULL);
	zk_runtime_free(rt);
}

Test(cov2_obs, dump_at_exit_with_nothing_alive_prints_nothing)
{
	need_metrics();
	char *dir = zt_tmpdir();
	char path[256];
	snprintf(path, sizeof(path), "%s/err", dir);
	int fd = open(path, O_CREAT | O_RDWR | O_TRUNC, 0600);
	cr_assert_geq(fd, 0);
	fflush(stderr);
	int saved = dup(2);
	cr_assert_geq(saved, 0);
	cr_assert_eq(dup2(fd, 2), 2);
	setenv("ZK_TASK_DUMP_AT_EXIT", "1", 1);
	/* A runtime that never ran a task (a finished zk_block_on task can
	 * still be linked for a moment after the call returns: see the
	 * report of tests/pending_dump_at_exit_block_on.c). */
	zk_runtime_t *rt = zt_runtime(2);
	zk_runtime_free(rt);
	unsetenv("ZK_TASK_DUMP_AT_EXIT");
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	char buf[512] = {0};
	ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
	close(fd);
	cr_assert_geq(n, 0);
	cr_assert_null(strstr(buf, "alive at shutdown"), "%s", buf);
	zt_rmtree(dir);
}

/* ---- the metrics socket ----------------------------------------------------------------- */

static int unix_client(const char *path)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert_geq(fd, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0, "connect %s: %s", path,
		     strerror(errno));
	return fd;
}

/* Sends req and reads until a newline or end of stream; returns what came
 * (malloc'ed, possibly empty). */
static char *ask(const char *path, const char *req, size_t reqlen)
{
	int fd = unix_client(path);
	cr_assert_eq(write(fd, req, reqlen), (ssize_t)reqlen);
	size_t cap = 1 << 16, have = 0;
	char *buf = malloc(cap);
	buf[0] = '\0';
	for (;;) {
		if (have + 1 == cap)
			buf = realloc(buf, cap *= 2);
		ssize_t n = read(fd, buf + have, cap - have - 1);
		cr_assert_geq(n, 0);
		if (n == 0)
			break;
		have += (size_t)n;
		buf[have] = '\0';
		if (memchr(buf, '\n', have))
			break;
	}
	close(fd);
	return buf;
}

Test(cov2_obs, serve_argument_and_bind_errors)
{
	need_metrics();
	zk_runtime_t *rt = zt_runtime(1);
	char longp[200];
	memset(longp, 'a', sizeof(longp) - 1);
	longp[sizeof(longp) - 1] = '\0';
	cr_assert_eq(zk_metrics_serve(NULL, "/tmp/x.sock"), -EINVAL);
	cr_assert_eq(zk_metrics_serve(rt, NULL), -EINVAL);
	cr_assert_eq(zk_metrics_serve(rt, ""), -EINVAL);
	cr_assert_eq(zk_metrics_serve(rt, longp), -EINVAL);
	/* A directory that does not exist: the bind error, and the runtime
	 * can serve elsewhere afterwards. */
	cr_assert_eq(zk_metrics_serve(rt, "/nonexistent-zokio-dir/m.sock"), -ENOENT);
	char *dir = zt_tmpdir();
	char path[256];
	snprintf(path, sizeof(path), "%s/m.sock", dir);
	cr_assert_eq(zk_metrics_serve(rt, path), 0);
	char *js = ask(path, "json\n", 5);
	cr_assert_eq(strncmp(js, "{", 1), 0, "%s", js);
	free(js);
	zk_runtime_free(rt);
	cr_assert_neq(access(path, F_OK), 0);

	/* A runtime that is shut down cannot start the server task; the
	 * socket it bound is removed again. */
	rt = zt_runtime(1);
	cr_assert_eq(zk_runtime_shutdown(rt), 0);
	cr_assert_eq(zk_metrics_serve(rt, path), -ECANCELED);
	cr_assert_neq(access(path, F_OK), 0);
	zk_runtime_free(rt);
	zt_rmtree(dir);
}

Test(cov2_obs, serve_quit_empty_crlf_and_too_long)
{
	need_metrics();
	zk_runtime_t *rt = zt_runtime(2);
	char *dir = zt_tmpdir();
	char path[256];
	snprintf(path, sizeof(path), "%s/m.sock", dir);
	cr_assert_eq(zk_metrics_serve(rt, path), 0);

	char *a = ask(path, "json\r\n", 6);
	cr_assert_not_null(strstr(a, "\"workers\":2"), "%s", a);
	free(a);
	a = ask(path, "\n", 1);
	cr_assert_not_null(strstr(a, "\"workers\":2"), "%s", a);
	free(a);
	/* quit: the server closes without answering. */
	a = ask(path, "quit\n", 5);
	cr_assert_str_eq(a, "");
	free(a);
	/* Two requests in one write, the second is quit: one answer, then
	 * the end of the stream. */
	int fd = unix_client(path);
	cr_assert_eq(write(fd, "dump\nquit\n", 10), 10);
	char buf[1 << 16];
	size_t have = 0;
	for (;;) {
		ssize_t n = read(fd, buf + have, sizeof(buf) - 1 - have);
		cr_assert_geq(n, 0);
		if (n == 0)
			break;
		have += (size_t)n;
		cr_assert_lt(have, sizeof(buf) - 1);
	}
	buf[have] = '\0';
	cr_assert_eq(strncmp(buf, "{\"tasks\":[", 10), 0, "%s", buf);
	close(fd);
	/* A line longer than the server's buffer. */
	char lng[600];
	memset(lng, 'x', sizeof(lng));
	a = ask(path, lng, sizeof(lng));
	cr_assert_not_null(strstr(a, "request too long"), "%s", a);
	free(a);
	zk_runtime_free(rt);
	zt_rmtree(dir);
}

Test(cov2_obs, env_socket_with_pid)
{
	need_metrics();
	char *dir = zt_tmpdir();
	char tmpl[256], path[256];
	snprintf(tmpl, sizeof(tmpl), "%s/m-%%p.sock", dir);
	snprintf(path, sizeof(path), "%s/m-%ld.sock", dir, (long)getpid());
	setenv("ZK_METRICS_SOCK", tmpl, 1);
	zk_runtime_t *rt = zt_runtime(1);
	/* The only worker binds the socket when it starts, before it runs
	 * any task: once a task ran, the socket is there. */
	zt_run(rt, nothing, NULL);
	char *a = ask(path, "json\n", 5);
	cr_assert_not_null(strstr(a, "\"workers\":1"), "%s", a);
	free(a);
	/* The path was taken once: a second runtime does not serve it. */
	zk_runtime_t *rt2 = zt_runtime(1);
	cr_assert_eq(zk_metrics_serve(rt, path), -EBUSY);
	zk_runtime_free(rt2);
	zk_runtime_free(rt);
	unsetenv("ZK_METRICS_SOCK");
	cr_assert_neq(access(path, F_OK), 0);
	zt_rmtree(dir);
}

Test(cov2_obs, env_socket_that_cannot_bind)
{
	need_metrics();
	setenv("ZK_METRICS_SOCK", "/nonexistent-zokio-dir/m-%p-%p.sock", 1);
	zk_runtime_t *rt = zt_runtime(1);
	zt_run(rt, nothing, NULL); /* the worker has tried, see above */
	unsetenv("ZK_METRICS_SOCK");
	/* The failed autostart left the runtime free to serve. */
	char *dir = zt_tmpdir();
	char path[256];
	snprintf(path, sizeof(path), "%s/m.sock", dir);
	cr_assert_eq(zk_metrics_serve(rt, path), 0);
	char *a = ask(path, "json\n", 5);
	cr_assert_eq(a[0], '{', "%s", a);
	free(a);
	zk_runtime_free(rt);
	zt_rmtree(dir);
}
