/* tests/test_noblock.c — the runtime never sleeps, yields or spins.
 *
 * Statically: no file in lib/ or backends/ calls sleep, usleep, nanosleep,
 * clock_nanosleep, sched_yield, pthread_yield, thrd_yield or thrd_sleep (the
 * sources are found through ZK_SOURCE_ROOT, set by meson; comments and string
 * literals are ignored). Dynamically: an idle runtime, and one whose tasks
 * are all suspended, burns (almost) no CPU and makes no periodic wake-ups. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"

/* A hung test fails on its own instead of stalling the whole file. */
TestSuite(noblock, .timeout = 60);

/* ---- the scanner ------------------------------------------------------------------------ */

static const char *const banned_calls[] = {
    "sleep", "usleep", "nanosleep", "clock_nanosleep", "sched_yield",
    "pthread_yield", "thrd_yield", "thrd_sleep", NULL,
};
/* Raw syscall numbers of the same, flagged wherever they appear. */
static const char *const banned_anywhere[] = {
    "SYS_nanosleep", "SYS_clock_nanosleep", "SYS_sched_yield",
    "__NR_nanosleep", "__NR_clock_nanosleep", "__NR_sched_yield", NULL,
};

static bool in_list(const char *const *list, const char *s, size_t len)
{
	for (; *list; list++)
		if (strlen(*list) == len && memcmp(*list, s, len) == 0)
			return true;
	return false;
}

/* Copies src with comments, string and character literals blanked out
 * (newlines kept, so line numbers stay right). */
static char *strip(const char *src)
{
	size_t n = strlen(src);
	char *out = malloc(n + 1);
	size_t i = 0;
	while (i < n) {
		char c = src[i];
		if (c == '/' && src[i + 1] == '*') {
			out[i] = out[i + 1] = ' ';
			i += 2;
			while (i < n && !(src[i] == '*' && src[i + 1] == '/')) {
				out[i] = src[i] == '\n' ? '\n' : ' ';
				i++;
			}
			if (i < n) {
				out[i] = out[i + 1] = ' ';
				i += 2;
			}
		} else if (c == '/' && src[i + 1] == '/') {
			while (i < n && src[i] != '\n') {
				/* A backslash-newline continues a // comment. */
				if (src[i] == '\\' && src[i + 1] == '\n') {
					out[i] = ' ';
					out[i + 1] = '\n';
					i += 2;
					continue;
				}
				out[i++] = ' ';
			}
		} else if (c == '"' || c == '\'') {
			out[i++] = ' ';
			while (i < n && src[i] != c && src[i] != '\n') {
				if (src[i] == '\\' && i + 1 < n) {
					out[i] = ' ';
					out[i + 1] = src[i + 1] == '\n' ? '\n' : ' ';
					i += 2;
					continue;
				}
				out[i++] = ' ';
			}
			if (i < n) {
				out[i] = src[i] == '\n' ? '\n' : ' ';
				i++;
			}
		} else {
			out[i] = c;
			i++;
		}
	}
	out[n] = '\0';
	return out;
}

static bool ident_char(char c)
{
	return isalnum((unsigned char)c) || c == '_';
}

/* Counts banned uses in a source text. In C, a banned name is a use when
 * it is called (followed by '(') or its address is taken ('&name'); in
 * assembly (asm = true) any mention is. Reports the first one. */
static int scan(const char *src, bool asm_file, char *first, size_t first_len)
{
	char *s = strip(src);
	int hits = 0;
	int line = 1;
	for (size_t i = 0; s[i];) {
		if (s[i] == '\n') {
			line++;
			i++;
			continue;
		}
		if (!ident_char(s[i]) || (i > 0 && ident_char(s[i - 1]))) {
			i++;
			continue;
		}
		size_t j = i;
		while (ident_char(s[j]))
			j++;
		size_t len = j - i;
		bool hit = in_list(banned_anywhere, s + i, len);
		if (!hit && in_list(banned_calls, s + i, len)) {
			if (asm_file) {
				hit = true;
			} else {
				size_t k = j;
				while (s[k] == ' ' || s[k] == '\t' || s[k] == '\n')
					k++;
				size_t b = i;
				while (b > 0 && (s[b - 1] == ' ' || s[b - 1] == '\t'))
					b--;
				bool member = b > 0 && (s[b - 1] == '.' ||
							(b > 1 && s[b - 1] == '>' && s[b - 2] == '-'));
				hit = !member && (s[k] == '(' || (b > 0 && s[b - 1] == '&'));
			}
		}
		if (hit) {
			if (hits == 0 && first)
				snprintf(first, first_len, "line %d: %.*s", line, (int)len, s + i);
			hits++;
		}
		i = j;
	}
	free(s);
	return hits;
}

Test(noblock, scanner_flags_calls_and_ignores_comments_strings_and_lookalikes)
{
	char first[128];
	cr_assert_eq(scan("void f(void) { usleep(10); }", false, first, sizeof(first)), 1);
	cr_assert_str_eq(first, "line 1: usleep");
	cr_assert_eq(scan("int x;\n\n  sched_yield ();", false, first, sizeof(first)), 1);
	cr_assert_str_eq(first, "line 3: sched_yield");
	cr_assert_eq(scan("r = nanosleep(&ts, NULL) + sleep(1) + thrd_sleep(&t, 0);", false,
			  NULL, 0), 3);
	cr_assert_eq(scan("void (*p)(void) = &pthread_yield; thrd_yield();", false, NULL, 0), 2);
	cr_assert_eq(scan("syscall(SYS_nanosleep, &ts, 0);", false, NULL, 0), 1);
	cr_assert_eq(scan("clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, 0);", false, NULL, 0), 1);
	/* Not uses. */
	cr_assert_eq(scan("/* sleep(1) */ // usleep(2)\n"
			  "const char *s = \"sched_yield()\"; char c = '(';\n"
			  "zk_sleep_ms(1); my_nanosleep(2); sleep_count++; w->sleep(3); o.usleep(4);\n"
			  "/* multi\n line nanosleep(1)\n */ int sleepers;\n",
			  false, NULL, 0),
		     0);
	/* Assembly: any mention. */
	cr_assert_eq(scan("\tcall nanosleep@PLT\n", true, NULL, 0), 1);
	cr_assert_eq(scan("/* call sleep */\n\tret\n", true, NULL, 0), 0);
}

static int files_scanned;
static int violations;
static char violation_msg[1024];

static bool has_suffix(const char *s, const char *suf)
{
	size_t a = strlen(s), b = strlen(suf);
	return a >= b && strcmp(s + a - b, suf) == 0;
}

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	long len = ftell(f);
	fseek(f, 0, SEEK_SET);
	char *buf = malloc((size_t)len + 1);
	size_t got = fread(buf, 1, (size_t)len, f);
	buf[got] = '\0';
	fclose(f);
	return buf;
}

static int scan_file(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)ftw;
	if (flag != FTW_F)
		return 0;
	bool c = has_suffix(path, ".c") || has_suffix(path, ".h");
	bool s = has_suffix(path, ".S") || has_suffix(path, ".s");
	if (!c && !s)
		return 0;
	char *src = slurp(path);
	if (!src)
		return 0;
	files_scanned++;
	char first[128];
	int n = scan(src, s, first, sizeof(first));
	if (n > 0) {
		size_t used = strlen(violation_msg);
		snprintf(violation_msg + used, sizeof(violation_msg) - used, "%s: %d (%s); ", path,
			 n, first);
		violations += n;
	}
	free(src);
	return 0;
}

Test(noblock, lib_and_backends_never_sleep_or_yield_the_cpu)
{
	const char *root = getenv("ZK_SOURCE_ROOT");
	cr_assert_not_null(root, "ZK_SOURCE_ROOT is not set (meson test sets it)");
	const char *dirs[] = {"lib", "backends"};
	for (size_t i = 0; i < 2; i++) {
		char path[4096];
		snprintf(path, sizeof(path), "%s/%s", root, dirs[i]);
		cr_assert_eq(nftw(path, scan_file, 16, FTW_PHYS), 0, "cannot walk %s: %s", path,
			     strerror(errno));
	}
	/* Guard against a vacuous pass (wrong root, empty dirs). */
	cr_assert_geq(files_scanned, 10, "only %d source files found under %s", files_scanned,
		      root);
	cr_assert_eq(violations, 0, "forbidden calls: %s", violation_msg);
}

/* ---- idle CPU and wake-ups --------------------------------------------------------------- */

struct usage {
	double cpu_ms;
	long vcsw;
	long ivcsw;
};

static struct usage usage_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (struct usage){ts.tv_sec * 1e3 + ts.tv_nsec / 1e6, ru.ru_nvcsw, ru.ru_nivcsw};
}

/* Measures the process over `ms` of idle wall time. */
static struct usage idle_usage(unsigned ms)
{
	struct usage a = usage_now();
	zt_msleep(ms);
	struct usage b = usage_now();
	return (struct usage){b.cpu_ms - a.cpu_ms, b.vcsw - a.vcsw, b.ivcsw - a.ivcsw};
}

/* A busy-polling worker burns a whole CPU (500 ms per 500 ms), a worker
 * woken every tick switches hundreds of times; the bounds are far from
 * both and far above what an idle process does. */
#define IDLE_MS 500
#define CPU_BOUND_MS 60.0
#define SWITCH_BOUND 60

static void assert_idle(const char *what)
{
	struct usage u = idle_usage(IDLE_MS);
	cr_log_info("%s: %.1f ms CPU, %ld voluntary switches in %d ms", what, u.cpu_ms, u.vcsw,
		    IDLE_MS);
	cr_assert_lt(u.cpu_ms, CPU_BOUND_MS, "%s: %.1f ms of CPU in %d ms idle", what, u.cpu_ms,
		     IDLE_MS);
	cr_assert_lt(u.vcsw, SWITCH_BOUND, "%s: %ld context switches in %d ms idle", what,
		     u.vcsw, IDLE_MS);
}

static void *nothing(void *arg)
{
	return arg;
}

Test(noblock, an_idle_runtime_uses_no_cpu_and_makes_no_wakeups)
{
	zk_runtime_t *rt = zt_runtime(4);
	zt_run(rt, nothing, NULL);
	zt_msleep(50); /* let the workers park */
	assert_idle("idle runtime");
	zk_runtime_free(rt);
}

struct suspended {
	int sv[2];
	zk_oneshot_t os;
	atomic_long ready;
};

static void *recv_forever(void *arg)
{
	struct suspended *s = arg;
	char c;
	atomic_fetch_add(&s->ready, 1);
	return (void *)(intptr_t)zk_recv(s->sv[0], &c, 1, 0);
}

static void *sleep_long(void *arg)
{
	struct suspended *s = arg;
	atomic_fetch_add(&s->ready, 1);
	return (void *)(intptr_t)zk_sleep_ms(60000);
}

static void *oneshot_forever(void *arg)
{
	struct suspended *s = arg;
	atomic_fetch_add(&s->ready, 1);
	return (void *)(intptr_t)zk_oneshot_recv(&s->os, NULL);
}

static void *signal_forever(void *arg)
{
	struct suspended *s = arg;
	atomic_fetch_add(&s->ready, 1);
	return (void *)(intptr_t)zk_signal_wait(SIGUSR2);
}

Test(noblock, a_runtime_whose_tasks_all_wait_uses_no_cpu_and_makes_no_wakeups)
{
	zk_runtime_t *rt = zt_runtime(2);
	struct suspended s = {0};
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, s.sv), 0);
	zk_oneshot_init(&s.os);
	zk_task_fn fns[] = {recv_forever, sleep_long, oneshot_forever, signal_forever};
	for (int r = 0; r < 10; r++)
		for (int i = 0; i < 4; i++)
			cr_assert_eq(zk_spawn_on(rt, NULL, fns[i], &s), 0);
	cr_assert(zt_wait_at_least(&s.ready, 40, 10000));
	zt_msleep(50);
	assert_idle("suspended tasks");
	zk_runtime_free(rt);
	close(s.sv[0]);
	close(s.sv[1]);
}

static void *burst(void *arg)
{
	(void)arg;
	for (int i = 0; i < 2000; i++) {
		zk_task_t *h;
		ZT_CHECK_EQ(zk_spawn(&h, nothing, NULL), 0);
		ZT_CHECK_EQ(zk_join(h, NULL), 0);
	}
	for (int i = 0; i < 5; i++)
		zk_sleep_ms(1);
	return NULL;
}

Test(noblock, a_runtime_goes_quiet_again_after_a_burst_of_work)
{
	zk_runtime_t *rt = zt_runtime(4);
	zt_run(rt, burst, NULL);
	zt_msleep(50);
	assert_idle("after a burst");
	zk_runtime_free(rt);
}
