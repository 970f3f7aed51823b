/* tests/test_cov_io.c — fs.h/net.h calls on pipes and sockets in the corners
 * the other suites do not reach: a read on a pipe that must wait for a
 * writer, an offset on a file that cannot seek, vectored I/O on pipes and
 * sockets, zk_poll on bad and closed descriptors, MSG_WAITALL across two
 * sends, MSG_DONTWAIT with nothing to read, sendmsg/recvmsg on a stream,
 * connect refused, shutdown, accept on a socket that does not listen, a
 * write into a pipe nobody reads.
 *
 * Every scenario runs twice: on the runtime the test setup picks (io_uring,
 * epoll, or the fault-injection backend wrapping either) and on an explicit
 * epoll runtime, so both backends are held to the same documented results. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sys/stat.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/eventfd.h>
#include <sys/uio.h>
#include <termios.h>
#include <unistd.h>

#include "helpers.h"

TestSuite(cov_io, .timeout = 60);

static zk_runtime_t *runtime_on(zk_backend_kind_t kind)
{
	zk_config_t cfg;
	memset(&cfg, 0, sizeof(cfg));
	cfg.workers = 2;
	cfg.backend = kind;
	zk_runtime_t *rt = NULL;
	int r = zk_runtime_create(&rt, &cfg);
	cr_assert_eq(r, 0, "zk_runtime_create(backend=%d) = %d", (int)kind, r);
	return rt;
}

/* Runs fn on the setup's backend, then on epoll. */
static void on_both(zk_task_fn fn, void *arg)
{
	const zk_backend_kind_t kinds[] = {ZK_BACKEND_DEFAULT, ZK_BACKEND_EPOLL};
	for (unsigned i = 0; i < 2; i++) {
		zk_runtime_t *rt = runtime_on(kinds[i]);
		zt_run(rt, fn, arg);
		zk_runtime_free(rt);
	}
}

/* A connected TCP pair on 127.0.0.1 (from a task). */
static bool tcp_pair(int fds[2])
{
	int lfd = zk_tcp_listen("127.0.0.1", 0, 4);
	ZT_CHECK(lfd >= 0);
	if (lfd < 0)
		return false;
	int port = zk_socket_port(lfd);
	fds[0] = zk_tcp_connect("127.0.0.1", (uint16_t)port);
	ZT_CHECK(fds[0] >= 0);
	fds[1] = zk_accept(lfd, NULL, NULL);
	ZT_CHECK(fds[1] >= 0);
	zk_close(lfd);
	return fds[0] >= 0 && fds[1] >= 0;
}

/* ---- pipes ------------------------------------------------------------------------------ */

struct delayed_write {
	int fd;
	const void *buf;
	size_t len;
	ssize_t res;
};

static void *write_later(void *arg)
{
	struct delayed_write *d = arg;
	zk_sleep_ms(20);
	d->res = zk_write_all(d->fd, d->buf, d->len, -1);
	return NULL;
}

static void *pipe_read_waits(void *arg)
{
	(void)arg;
	int p[2];
	ZT_CHECK_EQ(pipe2(p, O_CLOEXEC), 0);
	static const char msg[] = "pipes-cannot-seek";
	struct delayed_write d = {.fd = p[1], .buf = msg, .len = sizeof(msg)};
	zk_task_t *w;
	ZT_CHECK_EQ(zk_spawn(&w, write_later, &d), 0);
	/* Nothing is there yet: the read waits for the writer. An offset on a
	 * pipe is ignored (fs.h: "for pipes and sockets too"). */
	char buf[64] = {0};
	size_t got = 0;
	while (got < sizeof(msg)) {
		ssize_t r = zk_read(p[0], buf + got, sizeof(buf) - got, 0);
		ZT_CHECK(r > 0);
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	ZT_CHECK_EQ(zk_join(w, NULL), 0);
	ZT_CHECK_EQ(d.res, (ssize_t)sizeof(msg));
	ZT_CHECK_EQ(got, sizeof(msg));
	ZT_CHECK(memcmp(buf, msg, sizeof(msg)) == 0);

	/* Vectored I/O on a pipe: two iovecs out, three back, the bytes in order. */
	char a[5] = "01234", b[7] = "5678901";
	struct iovec out[2] = {{a, sizeof(a)}, {b, sizeof(b)}};
	ZT_CHECK_EQ(zk_writev(p[1], out, 2, -1), 12);
	char x[3], y[4], z[5];
	struct iovec in[3] = {{x, sizeof(x)}, {y, sizeof(y)}, {z, sizeof(z)}};
	ZT_CHECK_EQ(zk_readv(p[0], in, 3, -1), 12);
	ZT_CHECK(memcmp(x, "012", 3) == 0);
	ZT_CHECK(memcmp(y, "3456", 4) == 0);
	ZT_CHECK(memcmp(z, "78901", 5) == 0);

	/* The writer closes: the reader sees end of file. */
	ZT_CHECK_EQ(zk_close(p[1]), 0);
	ZT_CHECK_EQ(zk_read(p[0], buf, sizeof(buf), -1), 0);
	ZT_CHECK_EQ(zk_close(p[0]), 0);
	return NULL;
}

Test(cov_io, a_pipe_read_waits_for_the_writer_and_ignores_its_offset)
{
	on_both(pipe_read_waits, NULL);
}

static void *pipe_without_reader(void *arg)
{
	(void)arg;
	int p[2];
	ZT_CHECK_EQ(pipe2(p, O_CLOEXEC), 0);
	ZT_CHECK_EQ(zk_close(p[0]), 0);
	/* fs.h: zk_write returns -EPIPE; the process is not killed. */
	ZT_CHECK_EQ(zk_write(p[1], "x", 1, -1), -EPIPE);
	struct iovec v = {"yz", 2};
	ZT_CHECK_EQ(zk_writev(p[1], &v, 1, -1), -EPIPE);
	ZT_CHECK_EQ(zk_close(p[1]), 0);
	/* The same with zk_write on a TCP socket whose peer closed: the first
	 * write may still be accepted, the peer's reset then breaks it. */
	int s[2];
	if (tcp_pair(s)) {
		ZT_CHECK_EQ(zk_close(s[1]), 0);
		ssize_t r = 1;
		for (int i = 0; i < 50 && r > 0; i++) {
			r = zk_write(s[0], "x", 1, -1);
			if (r > 0)
				zk_sleep_ms(2);
		}
		ZT_CHECK(r == -EPIPE || r == -ECONNRESET);
		zk_close(s[0]);
	}
	return NULL;
}

/* SIGPIPE keeps its default action (terminate) here: the call must return
 * -EPIPE and the test process must live. */
Test(cov_io, a_write_into_a_pipe_nobody_reads_returns_epipe_on_epoll)
{
	signal(SIGPIPE, SIG_DFL);
	zk_runtime_t *rt = runtime_on(ZK_BACKEND_EPOLL);
	zt_run(rt, pipe_without_reader, NULL);
	zk_runtime_free(rt);
}

/* On io_uring the kernel raises SIGPIPE in the thread that runs a WRITE into
 * a pipe without reader (or a socket whose peer is gone): the workers block
 * it, so with the default disposition the process lives and zk_write
 * returns -EPIPE as fs.h documents (zk_send is safe anyway: MSG_NOSIGNAL). */
Test(cov_io, a_write_into_a_pipe_nobody_reads_returns_epipe_on_io_uring)
{
	signal(SIGPIPE, SIG_DFL);
	zk_runtime_t *rt = runtime_on(ZK_BACKEND_IO_URING);
	zt_run(rt, pipe_without_reader, NULL);
	zk_runtime_free(rt);
}

/* ---- zk_poll ------------------------------------------------------------------------------ */

static void *poll_cases(void *arg)
{
	(void)arg;
	ZT_CHECK_EQ(zk_poll(-1, POLLIN), -EBADF);
	int p[2];
	ZT_CHECK_EQ(pipe2(p, O_CLOEXEC), 0);
	/* A pipe with room is writable at once; its read end waits for data. */
	int r = zk_poll(p[1], POLLOUT);
	ZT_CHECK(r > 0 && (r & POLLOUT));
	static const char one = '!';
	struct delayed_write d = {.fd = p[1], .buf = &one, .len = 1};
	zk_task_t *w;
	ZT_CHECK_EQ(zk_spawn(&w, write_later, &d), 0);
	r = zk_poll(p[0], POLLIN);
	ZT_CHECK(r > 0 && (r & POLLIN));
	ZT_CHECK_EQ(zk_join(w, NULL), 0);
	ZT_CHECK_EQ(d.res, 1);
	/* The writer gone: the read end reports a hang-up. */
	ZT_CHECK_EQ(zk_close(p[1]), 0);
	r = zk_poll(p[0], POLLIN);
	ZT_CHECK(r > 0 && (r & (POLLHUP | POLLIN)));
	int closed = p[0];
	ZT_CHECK_EQ(zk_close(p[0]), 0);
	/* A number that names no file. */
	ZT_CHECK_EQ(zk_poll(closed, POLLIN), -EBADF);
	return NULL;
}

Test(cov_io, zk_poll_reports_readiness_hangup_and_bad_descriptors)
{
	on_both(poll_cases, NULL);
}

/* ---- sockets ------------------------------------------------------------------------------ */

struct two_sends {
	int fd;
	ssize_t res;
};

static void *send_in_two_parts(void *arg)
{
	struct two_sends *s = arg;
	ssize_t a = zk_send_all(s->fd, "first-", 6);
	zk_sleep_ms(20);
	ssize_t b = zk_send_all(s->fd, "second", 6);
	s->res = a == 6 && b == 6 ? 12 : (a < 0 ? a : b);
	return NULL;
}

static void *socket_cases(void *arg)
{
	(void)arg;
	int s[2];
	if (!tcp_pair(s))
		return NULL;
	char buf[32];

	/* MSG_DONTWAIT with nothing queued: -EAGAIN at once. */
	ZT_CHECK_EQ(zk_recv(s[1], buf, sizeof(buf), MSG_DONTWAIT), -EAGAIN);

	/* MSG_WAITALL on a stream: one call returns both sends. */
	struct two_sends ts = {.fd = s[0]};
	zk_task_t *t;
	ZT_CHECK_EQ(zk_spawn(&t, send_in_two_parts, &ts), 0);
	memset(buf, 0, sizeof(buf));
	ZT_CHECK_EQ(zk_recv(s[1], buf, 12, MSG_WAITALL), 12);
	ZT_CHECK(memcmp(buf, "first-second", 12) == 0);
	ZT_CHECK_EQ(zk_join(t, NULL), 0);
	ZT_CHECK_EQ(ts.res, 12);

	/* sendmsg/recvmsg on a stream socket, two iovecs each way. */
	char h[4] = "head", bd[5] = "body!";
	struct iovec out[2] = {{h, 4}, {bd, 5}};
	struct msghdr m = {.msg_iov = out, .msg_iovlen = 2};
	ZT_CHECK_EQ(zk_sendmsg(s[0], &m, 0), 9);
	char r1[2], r2[7];
	struct iovec in[2] = {{r1, 2}, {r2, 7}};
	struct msghdr rm = {.msg_iov = in, .msg_iovlen = 2};
	size_t got = 0;
	while (got < 9) {
		ssize_t n = zk_recvmsg(s[1], &rm, 0);
		ZT_CHECK(n > 0);
		if (n <= 0)
			break;
		got += (size_t)n;
		/* Advance the iovecs past what arrived. */
		size_t adv = (size_t)n;
		while (adv && rm.msg_iovlen) {
			size_t k = adv < rm.msg_iov->iov_len ? adv : rm.msg_iov->iov_len;
			rm.msg_iov->iov_base = (char *)rm.msg_iov->iov_base + k;
			rm.msg_iov->iov_len -= k;
			adv -= k;
			if (!rm.msg_iov->iov_len) {
				rm.msg_iov++;
				rm.msg_iovlen--;
			}
		}
	}
	ZT_CHECK_EQ(got, 9);
	ZT_CHECK(memcmp(r1, "he", 2) == 0 && memcmp(r2, "adbody!", 7) == 0);

	/* zk_readv/zk_writev on sockets. */
	struct iovec wv[2] = {{"ab", 2}, {"cdef", 4}};
	ZT_CHECK_EQ(zk_writev(s[1], wv, 2, -1), 6);
	char p1[3], p2[3];
	struct iovec rv[2] = {{p1, 3}, {p2, 3}};
	ZT_CHECK_EQ(zk_read_exact(s[0], p1, 3, -1), 3);
	ZT_CHECK_EQ(zk_readv(s[0], &rv[1], 1, -1), 3);
	ZT_CHECK(memcmp(p1, "abc", 3) == 0 && memcmp(p2, "def", 3) == 0);

	/* A read blocked on a socket ends with 0 when the peer shuts down
	 * its sending side; the other direction still works. */
	ZT_CHECK_EQ(zk_shutdown(s[0], SHUT_WR), 0);
	ZT_CHECK_EQ(zk_recv(s[1], buf, sizeof(buf), 0), 0);
	ZT_CHECK_EQ(zk_send_all(s[1], "back", 4), 4);
	ZT_CHECK_EQ(zk_recv_exact(s[0], buf, 4), 4);
	ZT_CHECK(memcmp(buf, "back", 4) == 0);
	ZT_CHECK_EQ(zk_shutdown(s[0], 42), -EINVAL);

	zk_close(s[0]);
	zk_close(s[1]);
	return NULL;
}

Test(cov_io, stream_sockets_honour_waitall_dontwait_msg_vectors_and_shutdown)
{
	on_both(socket_cases, NULL);
}

static void *socket_errors(void *arg)
{
	(void)arg;
	/* A port that was just free: nothing listens there. */
	int lfd = zk_tcp_listen("127.0.0.1", 0, 1);
	ZT_CHECK(lfd >= 0);
	int port = zk_socket_port(lfd);
	zk_close(lfd);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ZT_CHECK(fd >= 0);
	ZT_CHECK_EQ(zk_connect(fd, (struct sockaddr *)&sa, sizeof(sa)), -ECONNREFUSED);
	/* accept on a socket that does not listen. */
	ZT_CHECK_EQ(zk_accept(fd, NULL, NULL), -EINVAL);
	ZT_CHECK_EQ(zk_close(fd), 0);
	/* shutdown of a socket that never connected. */
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ZT_CHECK_EQ(zk_shutdown(fd, SHUT_RDWR), -ENOTCONN);
	ZT_CHECK_EQ(zk_close(fd), 0);
	/* accept on a pipe, recv on a pipe: not sockets. */
	int p[2];
	ZT_CHECK_EQ(pipe2(p, O_CLOEXEC), 0);
	ZT_CHECK_EQ(zk_accept(p[0], NULL, NULL), -ENOTSOCK);
	char c;
	ZT_CHECK_EQ(zk_recv(p[0], &c, 1, 0), -ENOTSOCK);
	zk_close(p[0]);
	zk_close(p[1]);
	return NULL;
}

Test(cov_io, socket_calls_return_the_documented_errors)
{
	on_both(socket_errors, NULL);
}

/* ---- a connect that is cancelled ---------------------------------------------------------- */

static void *poll_forever(void *arg)
{
	int fd = (int)(intptr_t)arg;
	return (void *)(intptr_t)zk_poll(fd, POLLIN);
}

static void *cancel_waiters(void *arg)
{
	(void)arg;
	int p[2];
	ZT_CHECK_EQ(pipe2(p, O_CLOEXEC), 0);
	zk_task_t *t[3];
	for (int i = 0; i < 3; i++)
		ZT_CHECK_EQ(zk_spawn(&t[i], poll_forever, (void *)(intptr_t)p[0]), 0);
	zk_sleep_ms(10);
	/* Cancel the middle waiter first, then the others: each ends with
	 * -ECANCELED and the pipe stays usable. */
	ZT_CHECK_EQ(zk_cancel(t[1]), 0);
	void *res;
	ZT_CHECK_EQ(zk_join(t[1], &res), 0);
	ZT_CHECK_EQ((intptr_t)res, -ECANCELED);
	ZT_CHECK_EQ(zk_cancel(t[0]), 0);
	ZT_CHECK_EQ(zk_cancel(t[2]), 0);
	for (int i = 0; i < 3; i += 2) {
		ZT_CHECK_EQ(zk_join(t[i], &res), 0);
		ZT_CHECK_EQ((intptr_t)res, -ECANCELED);
	}
	ZT_CHECK_EQ(zk_write(p[1], "k", 1, -1), 1);
	char c = 0;
	ZT_CHECK_EQ(zk_read(p[0], &c, 1, -1), 1);
	ZT_CHECK_EQ(c, 'k');
	zk_close(p[0]);
	zk_close(p[1]);
	return NULL;
}

Test(cov_io, cancelled_waiters_on_one_pipe_each_end_and_the_pipe_still_works)
{
	on_both(cancel_waiters, NULL);
}

/* ---- regular files at the file position; character devices; eventfd ------------------------ */

static void *file_position_cases(void *arg)
{
	(void)arg;
	char *dir = zt_tmpdir();
	char path[512];
	snprintf(path, sizeof(path), "%s/pos", dir);
	int fd = zk_open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	ZT_CHECK(fd >= 0);
	/* off == -1 writes at the file position and advances it. */
	ZT_CHECK_EQ(zk_write(fd, "abc", 3, -1), 3);
	struct iovec wv[2] = {{"defg", 4}, {"hij", 3}};
	ZT_CHECK_EQ(zk_writev(fd, wv, 2, -1), 7);
	ZT_CHECK_EQ(lseek(fd, 0, SEEK_CUR), 10);
	ZT_CHECK_EQ(lseek(fd, 2, SEEK_SET), 2);
	char a[3] = {0}, b[4] = {0};
	struct iovec rv[2] = {{a, 3}, {b, 4}};
	ZT_CHECK_EQ(zk_readv(fd, rv, 2, -1), 7);
	ZT_CHECK(memcmp(a, "cde", 3) == 0 && memcmp(b, "fghi", 4) == 0);
	char c[8] = {0};
	ZT_CHECK_EQ(zk_read(fd, c, sizeof(c), -1), 1);
	ZT_CHECK_EQ(c[0], 'j');
	ZT_CHECK_EQ(zk_read(fd, c, sizeof(c), -1), 0); /* end of file */
	/* A timeout armed for the next call does not disturb a file op that
	 * finishes in time (epoll: a deadline on a pool job). */
	ZT_CHECK_EQ(zk_timeout_next(10 * ZK_NSEC_PER_SEC), 0);
	ZT_CHECK_EQ(zk_pwrite(fd, "XY", 2, 0), 2);
	ZT_CHECK_EQ(zk_timeout_next(10 * ZK_NSEC_PER_SEC), 0);
	ZT_CHECK_EQ(zk_fsync(fd), 0);
	ZT_CHECK_EQ(zk_pread(fd, c, 3, 0), 3);
	ZT_CHECK(memcmp(c, "XYc", 3) == 0);
	ZT_CHECK_EQ(zk_close(fd), 0);
	zt_rmtree(dir);
	return NULL;
}

Test(cov_io, file_reads_and_writes_at_the_file_position_advance_it)
{
	on_both(file_position_cases, NULL);
}

static void *device_cases(void *arg)
{
	(void)arg;
	int z = open("/dev/zero", O_RDONLY | O_CLOEXEC);
	int n = open("/dev/null", O_WRONLY | O_CLOEXEC);
	ZT_CHECK(z >= 0 && n >= 0);
	char buf[256];
	memset(buf, 0x5a, sizeof(buf));
	ZT_CHECK_EQ(zk_read(z, buf, sizeof(buf), -1), (ssize_t)sizeof(buf));
	for (size_t i = 0; i < sizeof(buf); i++)
		if (buf[i] != 0) {
			ZT_CHECK_EQ(buf[i], 0);
			break;
		}
	ZT_CHECK_EQ(zk_write(n, buf, sizeof(buf), -1), (ssize_t)sizeof(buf));
	/* The flags of the file are untouched by the call. */
	ZT_CHECK_EQ(fcntl(z, F_GETFL) & O_NONBLOCK, 0);
	ZT_CHECK_EQ(fcntl(n, F_GETFL) & O_NONBLOCK, 0);
	close(z);
	close(n);
	return NULL;
}

Test(cov_io, character_devices_read_and_write_like_files)
{
	on_both(device_cases, NULL);
}

/* ---- a full pipe ------------------------------------------------------------------------------ */

struct drain {
	int fd;
	size_t want;
	size_t got;
};

static void *drain_later(void *arg)
{
	struct drain *d = arg;
	zk_sleep_ms(20);
	char buf[4096];
	while (d->got < d->want) {
		ssize_t r = zk_read(d->fd, buf, sizeof(buf), -1);
		if (r <= 0)
			break;
		d->got += (size_t)r;
	}
	return NULL;
}

static void *full_pipe(void *arg)
{
	(void)arg;
	int p[2];
	ZT_CHECK_EQ(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
	char chunk[4096];
	memset(chunk, 'f', sizeof(chunk));
	size_t filled = 0;
	for (;;) {
		ssize_t r = write(p[1], chunk, sizeof(chunk));
		if (r < 0)
			break;
		filled += (size_t)r;
	}
	ZT_CHECK(filled > 0);
	/* Full: zk_poll for POLLOUT and zk_write wait until a reader drains it. */
	struct drain d = {.fd = p[0], .want = filled + sizeof(chunk)};
	zk_task_t *t;
	ZT_CHECK_EQ(zk_spawn(&t, drain_later, &d), 0);
	int r = zk_poll(p[1], POLLOUT);
	ZT_CHECK(r > 0 && (r & POLLOUT));
	ZT_CHECK_EQ(zk_write_all(p[1], chunk, sizeof(chunk), -1), (ssize_t)sizeof(chunk));
	ZT_CHECK_EQ(zk_join(t, NULL), 0);
	ZT_CHECK_EQ(d.got, filled + sizeof(chunk));
	zk_close(p[0]);
	zk_close(p[1]);
	return NULL;
}

Test(cov_io, a_full_pipe_makes_poll_and_write_wait_for_the_reader)
{
	on_both(full_pipe, NULL);
}

/* ---- cancelling a task whose file op has just been submitted ---------------------------------- */

struct file_reader {
	int fd;
	ssize_t first, second;
	char buf[16];
};

static void *read_twice(void *arg)
{
	struct file_reader *f = arg;
	/* A write: on epoll always a blocking-pool job (a cached read may be
	 * served inline), so the cancel finds it still queued. */
	f->first = zk_pwrite(f->fd, "0123456789abcdef", 16, 16);
	f->second = zk_pread(f->fd, f->buf, sizeof(f->buf), 0);
	return NULL;
}

static void *cancel_file_op(void *arg)
{
	(void)arg;
	char *dir = zt_tmpdir();
	char path[512];
	snprintf(path, sizeof(path), "%s/f", dir);
	int fd = zk_open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	ZT_CHECK(fd >= 0);
	ZT_CHECK_EQ(zk_pwrite(fd, "0123456789abcdef", 16, 0), 16);
	for (int i = 0; i < 20; i++) {
		struct file_reader f = {.fd = fd};
		zk_task_t *t;
		ZT_CHECK_EQ(zk_spawn(&t, read_twice, &f), 0);
		/* Let it submit its read (one worker: it runs now), then cancel
		 * it before the worker next polls for completions. */
		zk_yield();
		ZT_CHECK_EQ(zk_cancel(t), 0);
		ZT_CHECK_EQ(zk_join(t, NULL), 0);
		/* The write either lost to the cancel or completed. */
		ZT_CHECK(f.first == -ECANCELED || f.first == 16);
		/* Cancellation is sticky. */
		ZT_CHECK_EQ(f.second, -ECANCELED);
	}
	/* The file holds what was written before, and at most the one
	 * write the tasks made (same bytes each time). */
	char back[32];
	ssize_t n = zk_pread(fd, back, sizeof(back), 0);
	ZT_CHECK(n == 16 || n == 32);
	ZT_CHECK(memcmp(back, "0123456789abcdef", 16) == 0);
	if (n == 32)
		ZT_CHECK(memcmp(back + 16, "0123456789abcdef", 16) == 0);
	ZT_CHECK_EQ(zk_close(fd), 0);
	zt_rmtree(dir);
	return NULL;
}

Test(cov_io, a_file_op_cancelled_right_after_submission_ends_once)
{
	const zk_backend_kind_t kinds[] = {ZK_BACKEND_DEFAULT, ZK_BACKEND_EPOLL};
	for (unsigned i = 0; i < 2; i++) {
		zk_config_t cfg;
		memset(&cfg, 0, sizeof(cfg));
		cfg.workers = 1;
		cfg.backend = kinds[i];
		zk_runtime_t *rt = NULL;
		cr_assert_eq(zk_runtime_create(&rt, &cfg), 0);
		zt_run(rt, cancel_file_op, NULL);
		zk_runtime_free(rt);
	}
}

/* ---- zk_sendfile into a socket whose peer is gone -------------------------------------------- */

static void *sendfile_to_gone_peer(void *arg)
{
	(void)arg;
	char *dir = zt_tmpdir();
	char path[512];
	snprintf(path, sizeof(path), "%s/big", dir);
	int fd = zk_open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	ZT_CHECK(fd >= 0);
	size_t len = 4u << 20;
	char *data = malloc(len);
	zt_fill(data, len, 7);
	ZT_CHECK_EQ(zk_write_all(fd, data, len, 0), (ssize_t)len);
	free(data);
	int s[2];
	if (tcp_pair(s)) {
		ZT_CHECK_EQ(zk_close(s[1]), 0);
		ssize_t r = zk_sendfile(s[0], fd, 0, len);
		/* Nothing or part of it went out before the reset was seen. */
		ZT_CHECK(r == -EPIPE || r == -ECONNRESET || (r > 0 && (size_t)r < len));
		/* Whatever came back, the next send sees the broken connection. */
		ssize_t r2 = zk_sendfile(s[0], fd, 0, len);
		ZT_CHECK(r2 == -EPIPE || r2 == -ECONNRESET);
		zk_close(s[0]);
	}
	ZT_CHECK_EQ(zk_close(fd), 0);
	zt_rmtree(dir);
	return NULL;
}

/* SIGPIPE is ignored here: what is checked is the error code. */
Test(cov_io, sendfile_into_a_socket_whose_peer_closed_reports_the_broken_pipe)
{
	signal(SIGPIPE, SIG_IGN);
	on_both(sendfile_to_gone_peer, NULL);
}

/* ---- an eventfd and a pseudo-terminal ---------------------------------------------------------- */

static void *bump_later(void *arg)
{
	int fd = (int)(intptr_t)arg;
	zk_sleep_ms(20);
	uint64_t one = 5;
	return (void *)(intptr_t)zk_write(fd, &one, sizeof(one), 0);
}

static void *eventfd_and_pty(void *arg)
{
	(void)arg;
	/* An eventfd cannot seek: an offset is ignored, and the read waits
	 * for the counter to become non-zero. */
	int efd = eventfd(0, EFD_CLOEXEC);
	ZT_CHECK(efd >= 0);
	zk_task_t *t;
	ZT_CHECK_EQ(zk_spawn(&t, bump_later, (void *)(intptr_t)efd), 0);
	uint64_t v = 0;
	ZT_CHECK_EQ(zk_read(efd, &v, sizeof(v), 0), 8);
	ZT_CHECK_EQ(v, 5);
	void *res;
	ZT_CHECK_EQ(zk_join(t, &res), 0);
	ZT_CHECK_EQ((intptr_t)res, 8);
	zk_close(efd);

	/* A pseudo-terminal in raw mode: bytes written on one side are read
	 * on the other; a read waits for them. */
	int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (m < 0)
		return NULL; /* no pty support in this environment */
	ZT_CHECK_EQ(grantpt(m), 0);
	ZT_CHECK_EQ(unlockpt(m), 0);
	int s = open(ptsname(m), O_RDWR | O_NOCTTY | O_CLOEXEC);
	ZT_CHECK(s >= 0);
	struct termios tio;
	ZT_CHECK_EQ(tcgetattr(s, &tio), 0);
	cfmakeraw(&tio);
	ZT_CHECK_EQ(tcsetattr(s, TCSANOW, &tio), 0);
	struct delayed_write d = {.fd = s, .buf = "pong", .len = 4};
	ZT_CHECK_EQ(zk_spawn(&t, write_later, &d), 0);
	char buf[8] = {0};
	size_t got = 0;
	while (got < 4) {
		ssize_t r = zk_read(m, buf + got, 4 - got, -1);
		ZT_CHECK(r > 0);
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	ZT_CHECK(memcmp(buf, "pong", 4) == 0);
	ZT_CHECK_EQ(zk_join(t, NULL), 0);
	ZT_CHECK_EQ(d.res, 4);
	ZT_CHECK_EQ(zk_write_all(m, "ping", 4, -1), 4);
	got = 0;
	while (got < 4) {
		ssize_t r = zk_read(s, buf + got, 4 - got, -1);
		ZT_CHECK(r > 0);
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	ZT_CHECK(memcmp(buf, "ping", 4) == 0);
	/* The call left the terminal's flags as they were. */
	ZT_CHECK_EQ(fcntl(m, F_GETFL) & O_NONBLOCK, 0);
	close(s);
	close(m);
	return NULL;
}

Test(cov_io, eventfd_and_pseudo_terminal_reads_wait_for_their_writer)
{
	on_both(eventfd_and_pty, NULL);
}

/* ---- an open that blocks in the kernel (a FIFO without a writer) ------------------------------ */

struct fifo_open {
	char path[512];
	atomic_int stop;   /* the helper thread gives up */
	atomic_int opened; /* the helper opened the writing end */
	int res;
};

static void *open_fifo_reader(void *arg)
{
	struct fifo_open *f = arg;
	f->res = zk_open(f->path, O_RDONLY | O_CLOEXEC, 0);
	if (f->res >= 0)
		zk_close(f->res);
	return NULL;
}

/* Plain thread: opens the writing end as soon as a reader waits (a
 * non-blocking open for writing fails with ENXIO until then), which ends
 * an open still blocked in the kernel. */
static void *fifo_writer_thread(void *arg)
{
	struct fifo_open *f = arg;
	for (int i = 0; i < 10000 && !atomic_load(&f->stop); i++) {
		int fd = open(f->path, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
		if (fd >= 0) {
			atomic_store(&f->opened, 1);
			close(fd);
			return NULL;
		}
		zt_msleep(1);
	}
	return NULL;
}

static void *cancel_blocked_open(void *arg)
{
	struct fifo_open *f = arg;
	zk_task_t *t;
	ZT_CHECK_EQ(zk_spawn(&t, open_fifo_reader, f), 0);
	zk_sleep_ms(30); /* it is blocked in open(2) by now */
	ZT_CHECK_EQ(zk_cancel(t), 0);
	pthread_t th;
	ZT_CHECK_EQ(pthread_create(&th, NULL, fifo_writer_thread, f), 0);
	ZT_CHECK_EQ(zk_join(t, NULL), 0);
	atomic_store(&f->stop, 1);
	pthread_join(th, NULL);
	/* Cancelled in the kernel (io_uring interrupts its worker), or, where
	 * a blocking syscall cannot be interrupted (epoll's pool), the open
	 * ran to completion and its real result stands. */
	ZT_CHECK(f->res == -ECANCELED || f->res == -EINTR || f->res >= 0);
	/* (io_uring's first, non-blocking attempt opens a FIFO for reading
	 * with O_NONBLOCK, which does not wait for a writer: there the open
	 * may succeed before the cancel, with no writer at all.) */
	return NULL;
}

Test(cov_io, cancelling_an_open_blocked_on_a_fifo_ends_it_once)
{
	char *dir = zt_tmpdir();
	const zk_backend_kind_t kinds[] = {ZK_BACKEND_DEFAULT, ZK_BACKEND_EPOLL};
	for (unsigned i = 0; i < 2; i++) {
		struct fifo_open f = {.res = 1};
		snprintf(f.path, sizeof(f.path), "%s/fifo%u", dir, i);
		cr_assert_eq(mkfifo(f.path, 0600), 0);
		zk_runtime_t *rt = runtime_on(kinds[i]);
		zt_run(rt, cancel_blocked_open, &f);
		zk_runtime_free(rt);
	}
	zt_rmtree(dir);
}

static void *spawn_blocked_open(void *arg)
{
	struct fifo_open *f = arg;
	zk_task_t *t;
	ZT_CHECK_EQ(zk_spawn(&t, open_fifo_reader, f), 0);
	ZT_CHECK_EQ(zk_detach(t), 0);
	zk_sleep_ms(30);
	return NULL;
}

/* zk_runtime_free with a task blocked in open(2): the runtime still ends
 * (on epoll once the pool thread's open returns). */
Test(cov_io, freeing_a_runtime_with_an_open_blocked_on_a_fifo_still_ends)
{
	char *dir = zt_tmpdir();
	const zk_backend_kind_t kinds[] = {ZK_BACKEND_DEFAULT, ZK_BACKEND_EPOLL};
	for (unsigned i = 0; i < 2; i++) {
		struct fifo_open f = {.res = 1};
		snprintf(f.path, sizeof(f.path), "%s/fifo%u", dir, i);
		cr_assert_eq(mkfifo(f.path, 0600), 0);
		zk_runtime_t *rt = runtime_on(kinds[i]);
		zt_run(rt, spawn_blocked_open, &f);
		pthread_t th;
		cr_assert_eq(pthread_create(&th, NULL, fifo_writer_thread, &f), 0);
		zk_runtime_free(rt);
		atomic_store(&f.stop, 1);
		pthread_join(th, NULL);
		cr_assert(f.res == -ECANCELED || f.res == -EINTR || f.res >= 0, "res %d", f.res);
	}
	zt_rmtree(dir);
}

/* ---- socket helpers: documented errors ---------------------------------------------------------- */

static void *socket_helper_errors(void *arg)
{
	(void)arg;
	ZT_CHECK_EQ(zk_tcp_connect_addr(NULL, 0), -EINVAL);
	struct sockaddr_un un = {.sun_family = AF_UNIX};
	ZT_CHECK_EQ(zk_tcp_connect_addr((struct sockaddr *)&un, sizeof(un)), -EAFNOSUPPORT);
	/* TCP options on a UDP socket. */
	int u = zk_udp_bind("127.0.0.1", 0, 0);
	ZT_CHECK(u >= 0);
	ZT_CHECK_EQ(zk_tcp_nodelay(u, true), -EOPNOTSUPP);
	ZT_CHECK_EQ(zk_tcp_keepalive(u, 5, 1, 3), -EOPNOTSUPP);
	zk_close(u);
	/* Keep-alive with every knob on a TCP socket. */
	int s[2];
	if (!tcp_pair(s))
		return NULL;
	ZT_CHECK_EQ(zk_tcp_keepalive(s[0], 30, 5, 4), 0);
	int on = 0;
	socklen_t l = sizeof(on);
	ZT_CHECK_EQ(getsockopt(s[0], SOL_SOCKET, SO_KEEPALIVE, &on, &l), 0);
	ZT_CHECK(on);
	ZT_CHECK_EQ(zk_tcp_keepalive(s[0], -1, 0, 0), -EINVAL);
	/* A Unix socket has no port. */
	int sp[2];
	ZT_CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
	ZT_CHECK_EQ(zk_socket_port(sp[0]), -EAFNOSUPPORT);
	close(sp[0]);
	close(sp[1]);
	/* A graceful close whose peer never closes its side ends with
	 * -ETIMEDOUT, and the fd is closed anyway. */
	int fd = s[0];
	ZT_CHECK_EQ(zk_close_graceful(fd, 30 * ZK_NSEC_PER_MSEC), -ETIMEDOUT);
	ZT_CHECK(fcntl(fd, F_GETFD) < 0); /* closed: nothing else here opens fds */
	/* The peer saw the shutdown: end of file. */
	char c;
	ZT_CHECK_EQ(zk_recv(s[1], &c, 1, 0), 0);
	zk_close(s[1]);
	return NULL;
}

Test(cov_io, socket_helpers_return_their_documented_errors)
{
	on_both(socket_helper_errors, NULL);
}
