/* tests/test_fallback.c — the io_uring -> epoll fallback, proven in a sandbox
 * that forbids io_uring.
 *
 * Each test starts a child (this executable again, see run_sandboxed) that
 * installs a seccomp-BPF filter making io_uring_setup, io_uring_enter and
 * io_uring_register fail with EPERM or ENOSYS (everything else allowed), then
 * creates a real runtime there:
 *   - with no backend asked for (NULL config, ZK_BACKEND unset) the runtime
 *     must fall back to epoll, say so in exactly one line on stderr, and run
 *     real file I/O (zk_write/zk_read on a file in a temp dir) and a TCP echo
 *     round trip over 127.0.0.1;
 *   - with io_uring asked for (config or ZK_BACKEND=io_uring) creation must
 *     fail with the filter's error instead of silently using epoll.
 * A seccomp filter cannot be removed, hence the child. The child records
 * failures with ZT_CHECK (no Criterion assertions: it is not a Criterion
 * test process) and exits 0 only when every check passed; the parent asserts
 * that exit status. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"

#if defined(__x86_64__)
#define ZT_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define ZT_AUDIT_ARCH AUDIT_ARCH_AARCH64
#else
#error "test_fallback: add the AUDIT_ARCH_* value of this architecture"
#endif

/* Debian 12's headers have these; older ones may not (same number on every
 * architecture since Linux 5.1). */
#ifndef __NR_io_uring_setup
#define __NR_io_uring_setup 425
#endif
#ifndef __NR_io_uring_enter
#define __NR_io_uring_enter 426
#endif
#ifndef __NR_io_uring_register
#define __NR_io_uring_register 427
#endif

/* A hung test fails on its own instead of stalling the whole file. */
TestSuite(fallback, .timeout = 60);

/* ---- the sandbox ---------------------------------------------------------------------- */

/* Makes the three io_uring syscalls fail with err in the calling thread and
 * every thread it creates later; everything else stays allowed. Returns 0 or
 * -errno. */
static int forbid_io_uring(int err)
{
	struct sock_filter prog[] = {
		/* Another ABI (none in practice: the test is native): numbers
		 * mean other things there, allow. */
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, ZT_AUDIT_ARCH, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
#if defined(__x86_64__)
		/* x32 calls share AUDIT_ARCH_X86_64 with bit 30 set. */
		BPF_STMT(BPF_ALU | BPF_AND | BPF_K, ~0x40000000u),
#endif
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 3, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_enter, 2, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_register, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ((unsigned)err & SECCOMP_RET_DATA)),
	};
	struct sock_fprog fprog = {.len = (unsigned short)(sizeof(prog) / sizeof(prog[0])),
				   .filter = prog};
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
		return -errno;
	if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &fprog, 0, 0) != 0)
		return -errno;
	return 0;
}

/* The filter really is in force: the raw syscalls fail with err. */
static void check_sandbox(int err)
{
	unsigned char params[120]; /* struct io_uring_params */
	memset(params, 0, sizeof(params));
	errno = 0;
	long r = syscall(__NR_io_uring_setup, 4, params);
	ZT_CHECK_EQ(r, -1);
	ZT_CHECK_EQ(errno, err);
	errno = 0;
	r = syscall(__NR_io_uring_enter, -1, 0, 0, 0, NULL, 0);
	ZT_CHECK_EQ(r, -1);
	ZT_CHECK_EQ(errno, err);
	errno = 0;
	r = syscall(__NR_io_uring_register, -1, 0, NULL, 0);
	ZT_CHECK_EQ(r, -1);
	ZT_CHECK_EQ(errno, err);
}

/* zk_runtime_create(out, cfg) with stderr captured in a file of dir; the
 * captured text is stored in log (NUL-terminated). */
static int create_capturing_stderr(zk_runtime_t **out, const zk_config_t *cfg, const char *dir,
				   char *log, size_t logsz)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/stderr", dir);
	log[0] = '\0';
	fflush(stderr);
	int saved = dup(STDERR_FILENO);
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	ZT_CHECK(saved >= 0);
	ZT_CHECK(fd >= 0);
	if (saved < 0 || fd < 0) {
		if (saved >= 0)
			close(saved);
		if (fd >= 0)
			close(fd);
		return -EBADF;
	}
	dup2(fd, STDERR_FILENO);
	int r = zk_runtime_create(out, cfg);
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	ssize_t n = pread(fd, log, logsz - 1, 0);
	log[n > 0 ? n : 0] = '\0';
	close(fd);
	unlink(path);
	/* Shown in the test's own output as well. */
	fputs(log, stderr);
	return r;
}

static int count_lines(const char *s)
{
	int n = 0;
	for (; *s; s++)
		n += *s == '\n';
	return n;
}

/* ---- running a sandboxed child ------------------------------------------------------- */

/* The child is this executable run again (fork + exec through posix_spawn)
 * with ZT_FALLBACK_CHILD="<mode> <errno> <dir>" in its environment; a
 * constructor picks that up and runs the child's code before Criterion's
 * main ever starts. A plain fork would continue in a copy of the Criterion
 * test process, which already runs two threads: ThreadSanitizer refuses to
 * start threads after such a fork (die_after_fork), and the copy would have
 * to _exit (Criterion's exit handlers must not run twice), skipping
 * LeakSanitizer. An exec'd child is a fresh, single-threaded process that
 * exits normally and gets the sanitizers' exit checks. */

enum child_mode { CHILD_DEFAULT_FALLS_BACK, CHILD_EXPLICIT_IO_URING, CHILD_ENV_IO_URING, CHILD_MODES };

extern char **environ;

/* Runs child mode `mode` sandboxed by forbid_io_uring(err) in a fresh temp
 * dir, and asserts that it exited 0 (every check passed). */
static void run_sandboxed(enum child_mode mode, int err)
{
	char *dir = zt_tmpdir();
	char spec[PATH_MAX + 32];
	snprintf(spec, sizeof(spec), "%d %d %s", (int)mode, err, dir);
	cr_assert_eq(setenv("ZT_FALLBACK_CHILD", spec, 1), 0);
	char *argv[] = {(char *)"test_fallback-sandboxed-child", NULL};
	pid_t pid = -1;
	fflush(NULL);
	int r = posix_spawn(&pid, "/proc/self/exe", NULL, NULL, argv, environ);
	unsetenv("ZT_FALLBACK_CHILD");
	cr_assert_eq(r, 0, "posix_spawn: %s", strerror(r));
	int status = 0;
	pid_t w;
	while ((w = waitpid(pid, &status, 0)) < 0 && errno == EINTR)
		;
	zt_rmtree(dir);
	cr_assert_eq(w, pid, "waitpid: %s", strerror(errno));
	cr_assert(WIFEXITED(status), "sandboxed child killed by signal %d",
		  WIFSIGNALED(status) ? WTERMSIG(status) : -1);
	cr_assert_eq(WEXITSTATUS(status), 0,
		     "sandboxed child exited %d (1: a check failed, 3: could not install "
		     "the seccomp filter; see its stderr)",
		     WEXITSTATUS(status));
}

/* ---- the workload --------------------------------------------------------------------- */

enum { FILE_LEN = 256 * 1024, ECHO_LEN = 24 * 1024, ECHO_CHUNK = 1500 };

struct work {
	const char *dir;
	int lfd;
	long echoed; /* bytes the server sent back */
};

static void *file_round_trip(struct work *w)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/data", w->dir);
	char *out = malloc(FILE_LEN), *in = malloc(FILE_LEN);
	ZT_CHECK(out && in);
	if (!out || !in)
		goto done;
	zt_fill(out, FILE_LEN, 11);
	int fd = zk_open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	ZT_CHECK(fd >= 0);
	if (fd < 0)
		goto done;
	/* Written in two halves, back half first, at explicit offsets. */
	ZT_CHECK_EQ(zk_write(fd, out + FILE_LEN / 2, FILE_LEN / 2, FILE_LEN / 2), FILE_LEN / 2);
	ZT_CHECK_EQ(zk_write(fd, out, FILE_LEN / 2, 0), FILE_LEN / 2);
	ZT_CHECK_EQ(zk_fsync(fd), 0);
	memset(in, 0, FILE_LEN);
	ZT_CHECK_EQ(zk_read(fd, in, FILE_LEN, 0), FILE_LEN);
	ZT_CHECK(memcmp(in, out, FILE_LEN) == 0);
	/* A read across the halves, and EOF. */
	memset(in, 0, FILE_LEN);
	ZT_CHECK_EQ(zk_read(fd, in, 10000, FILE_LEN / 2 - 5000), 10000);
	ZT_CHECK(zt_check_fill(in, 10000, 11, FILE_LEN / 2 - 5000));
	ZT_CHECK_EQ(zk_read(fd, in, 16, FILE_LEN), 0);
	ZT_CHECK_EQ(zk_close(fd), 0);
	/* Independent check that the bytes are in the file. */
	int pfd = open(path, O_RDONLY | O_CLOEXEC);
	ZT_CHECK(pfd >= 0);
	memset(in, 0, FILE_LEN);
	ZT_CHECK_EQ(pread(pfd, in, FILE_LEN, 0), FILE_LEN);
	ZT_CHECK(zt_check_fill(in, FILE_LEN, 11, 0));
	close(pfd);
done:
	free(out);
	free(in);
	return NULL;
}

/* Echoes everything it receives on one accepted connection until EOF. */
static void *echo_server(void *arg)
{
	struct work *w = arg;
	struct sockaddr_in peer;
	socklen_t plen = sizeof(peer);
	int cfd = zk_accept(w->lfd, (struct sockaddr *)&peer, &plen);
	ZT_CHECK(cfd >= 0);
	if (cfd < 0)
		return NULL;
	ZT_CHECK_EQ(peer.sin_family, AF_INET);
	ZT_CHECK_EQ(peer.sin_addr.s_addr, htonl(INADDR_LOOPBACK));
	char buf[4096];
	for (;;) {
		ssize_t n = zk_recv(cfd, buf, sizeof(buf), 0);
		ZT_CHECK(n >= 0);
		if (n <= 0)
			break;
		for (ssize_t off = 0; off < n;) {
			ssize_t s = zk_send(cfd, buf + off, (size_t)(n - off), 0);
			ZT_CHECK(s > 0);
			if (s <= 0)
				goto out;
			off += s;
			w->echoed += s;
		}
	}
out:
	ZT_CHECK_EQ(zk_close(cfd), 0);
	return NULL;
}

static void tcp_echo(struct work *w)
{
	w->lfd = zk_tcp_listen("127.0.0.1", 0, 16);
	ZT_CHECK(w->lfd >= 0);
	if (w->lfd < 0)
		return;
	int port = zk_socket_port(w->lfd);
	ZT_CHECK(port > 0);
	zk_task_t *srv = NULL;
	ZT_CHECK_EQ(zk_spawn(&srv, echo_server, w), 0);
	int fd = zk_tcp_connect("127.0.0.1", (uint16_t)port);
	ZT_CHECK(fd >= 0);
	char *out = malloc(ECHO_LEN), *in = malloc(ECHO_LEN);
	ZT_CHECK(out && in);
	if (fd >= 0 && out && in) {
		zt_fill(out, ECHO_LEN, 12);
		memset(in, 0, ECHO_LEN);
		/* Chunk by chunk: send one, read its echo back in full. */
		size_t done = 0;
		while (done < ECHO_LEN) {
			size_t len = ECHO_LEN - done < ECHO_CHUNK ? ECHO_LEN - done : ECHO_CHUNK;
			size_t sent = 0, got = 0;
			while (sent < len) {
				ssize_t s = zk_send(fd, out + done + sent, len - sent, 0);
				ZT_CHECK(s > 0);
				if (s <= 0)
					goto fail;
				sent += (size_t)s;
			}
			while (got < len) {
				ssize_t n = zk_recv(fd, in + done + got, len - got, 0);
				ZT_CHECK(n > 0);
				if (n <= 0)
					goto fail;
				got += (size_t)n;
			}
			done += len;
		}
		ZT_CHECK(memcmp(in, out, ECHO_LEN) == 0);
		/* Orderly close: the server sees EOF, closes, we see EOF. */
		ZT_CHECK_EQ(zk_shutdown(fd, SHUT_WR), 0);
		char c;
		ZT_CHECK_EQ(zk_recv(fd, &c, 1, 0), 0);
	}
fail:
	if (fd >= 0)
		ZT_CHECK_EQ(zk_close(fd), 0);
	if (srv)
		ZT_CHECK_EQ(zk_join(srv, NULL), 0);
	ZT_CHECK_EQ(w->echoed, ECHO_LEN);
	ZT_CHECK_EQ(zk_close(w->lfd), 0);
	free(out);
	free(in);
}

static void *workload(void *arg)
{
	struct work *w = arg;
	ZT_CHECK(zk_runtime_current() != NULL);
	file_round_trip(w);
	tcp_echo(w);
	return (void *)0x600d;
}

/* ---- children ------------------------------------------------------------------------- */

static void child_default_falls_back(int err, const char *dir)
{
	char log[1024];
	zk_runtime_t *rt = NULL;
	int r = create_capturing_stderr(&rt, NULL, dir, log, sizeof(log));
	ZT_CHECK_EQ(r, 0);
	if (r != 0 || !rt)
		return;
	const char *be = zk_runtime_backend(rt);
	ZT_CHECK(be && strcmp(be, "epoll") == 0);
	/* Exactly one line, naming the reason. */
	char want[200];
	snprintf(want, sizeof(want), "zokio: io_uring unavailable (%s); falling back to epoll\n",
		 strerror(err));
	ZT_CHECK_EQ(count_lines(log), 1);
	ZT_CHECK(strcmp(log, want) == 0);
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	ZT_CHECK_EQ(zk_runtime_workers(rt), ncpu > 256 ? 256 : ncpu);

	struct work w = {.dir = dir, .lfd = -1};
	void *res = NULL;
	ZT_CHECK_EQ(zk_block_on(rt, workload, &w, &res), 0);
	ZT_CHECK(res == (void *)0x600d);
	/* Still nothing of io_uring got through: the filter denied every try. */
	check_sandbox(err);
	ZT_CHECK_EQ(zk_runtime_shutdown(rt), 0);
	zk_runtime_free(rt);
}

Test(fallback, io_uring_denied_with_eperm_falls_back_to_epoll_and_does_io)
{
	run_sandboxed(CHILD_DEFAULT_FALLS_BACK, EPERM);
}

Test(fallback, io_uring_missing_enosys_falls_back_to_epoll_and_does_io)
{
	run_sandboxed(CHILD_DEFAULT_FALLS_BACK, ENOSYS);
}

static void child_explicit_io_uring_fails(int err, const char *dir)
{
	char log[1024];
	zk_runtime_t *rt = NULL;
	zk_config_t cfg = {.workers = 2, .backend = ZK_BACKEND_IO_URING};
	int r = create_capturing_stderr(&rt, &cfg, dir, log, sizeof(log));
	ZT_CHECK_EQ(r, -err);
	ZT_CHECK(strstr(log, "falling back") == NULL);
	if (r == 0)
		zk_runtime_free(rt);
	/* An explicit epoll still works in the same sandbox. */
	rt = NULL;
	cfg.backend = ZK_BACKEND_EPOLL;
	r = zk_runtime_create(&rt, &cfg);
	ZT_CHECK_EQ(r, 0);
	if (r == 0) {
		const char *be = zk_runtime_backend(rt);
		ZT_CHECK(be && strcmp(be, "epoll") == 0);
		zk_runtime_free(rt);
	}
}

Test(fallback, explicit_io_uring_backend_fails_with_eperm_instead_of_falling_back)
{
	run_sandboxed(CHILD_EXPLICIT_IO_URING, EPERM);
}

Test(fallback, explicit_io_uring_backend_fails_with_enosys_instead_of_falling_back)
{
	run_sandboxed(CHILD_EXPLICIT_IO_URING, ENOSYS);
}

static void child_env_io_uring_fails(int err, const char *dir)
{
	char log[1024];
	zk_runtime_t *rt = NULL;
	ZT_CHECK_EQ(setenv("ZK_BACKEND", "io_uring", 1), 0);
	int r = create_capturing_stderr(&rt, NULL, dir, log, sizeof(log));
	ZT_CHECK_EQ(r, -err);
	ZT_CHECK(strstr(log, "falling back") == NULL);
	if (r == 0)
		zk_runtime_free(rt);
}

Test(fallback, zk_backend_env_io_uring_fails_with_eperm_instead_of_falling_back)
{
	run_sandboxed(CHILD_ENV_IO_URING, EPERM);
}

/* ---- the child's entry point ---------------------------------------------------------- */

/* Runs before main in every start of this executable; does nothing unless
 * run_sandboxed() started this process. */
__attribute__((constructor)) static void sandboxed_child_main(void)
{
	const char *spec = getenv("ZT_FALLBACK_CHILD");
	if (!spec)
		return;
	int mode = -1, err = 0, pos = 0;
	if (sscanf(spec, "%d %d %n", &mode, &err, &pos) < 2 || pos == 0 || mode < 0 ||
	    mode >= CHILD_MODES || (err != EPERM && err != ENOSYS)) {
		fprintf(stderr, "bad ZT_FALLBACK_CHILD=\"%s\"\n", spec);
		_exit(2);
	}
	char dir[PATH_MAX];
	snprintf(dir, sizeof(dir), "%s", spec + pos);
	/* Never outlive the test process, never hang. */
	prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
	alarm(50);
	unsetenv("ZT_FALLBACK_CHILD");
	/* The suite also runs with ZK_BACKEND=epoll: that would choose epoll
	 * without ever trying io_uring. */
	unsetenv("ZK_BACKEND");
	int r = forbid_io_uring(err);
	if (r != 0) {
		fprintf(stderr, "seccomp filter: %s\n", strerror(-r));
		_exit(3);
	}
	check_sandbox(err);
	switch ((enum child_mode)mode) {
	case CHILD_DEFAULT_FALLS_BACK:
		child_default_falls_back(err, dir);
		break;
	case CHILD_EXPLICIT_IO_URING:
		child_explicit_io_uring_fails(err, dir);
		break;
	case CHILD_ENV_IO_URING:
		child_env_io_uring_fails(err, dir);
		break;
	case CHILD_MODES:
		break;
	}
	/* exit, not _exit: sanitizers run their exit checks (leaks). */
	exit(zt_failures() == 0 ? 0 : 1);
}
