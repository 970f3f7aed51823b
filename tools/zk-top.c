/* tools/zk-top.c — a `top` for a running Zokio process.
 *
 * Attaches to the metrics socket the runtime serves (zk_metrics_serve, or
 * ZK_METRICS_SOCK in the process's environment) and shows, refreshed every
 * interval: per-worker rates (tasks polled, spawned, stolen, parks, LIFO
 * hits, global-queue pulls, submissions, enters, completions, timers), queue
 * depths, and the percentiles of task run time, scheduling delay and I/O
 * latency per opcode. Keys: d toggles the task dump, q quits.
 *
 *   zk-top [--interval MS] [SOCKET]   the terminal UI
 *   zk-top --json [SOCKET]            one metrics snapshot as JSON, then exit
 *   zk-top --dump [SOCKET]            the task dump as JSON, then exit
 *
 * SOCKET defaults to $ZK_METRICS_SOCK. A plain client: it speaks the line
 * protocol (request "json" or "dump", one JSON line back) with blocking
 * sockets, draws with ANSI escapes, and needs no Zokio library. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

/* ---- a small JSON reader ---------------------------------------------------- */

enum jtype { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ };

struct jval {
	enum jtype type;
	double num;
	char *str;            /* J_STR */
	char *key;            /* member name inside an object */
	struct jval *kids;    /* J_ARR, J_OBJ */
	size_t nkids;
};

struct jparser {
	const char *p;
	bool bad;
};

static void jskip(struct jparser *j)
{
	while (*j->p == ' ' || *j->p == '\n' || *j->p == '\r' || *j->p == '\t')
		j->p++;
}

static char *jstring(struct jparser *j)
{
	if (*j->p != '"') {
		j->bad = true;
		return NULL;
	}
	j->p++;
	size_t cap = 16, n = 0;
	char *s = malloc(cap);
	while (*j->p && *j->p != '"') {
		char c = *j->p++;
		if (c == '\\' && *j->p) {
			c = *j->p++;
			if (c == 'n')
				c = '\n';
			else if (c == 't')
				c = '\t';
			else if (c == 'u') { /* keep it simple: skip the code point */
				for (int i = 0; i < 4 && *j->p; i++)
					j->p++;
				c = '?';
			}
		}
		if (n + 2 > cap)
			s = realloc(s, cap *= 2);
		s[n++] = c;
	}
	s[n] = '\0';
	if (*j->p == '"')
		j->p++;
	else
		j->bad = true;
	return s;
}

static void jparse(struct jparser *j, struct jval *v)
{
	memset(v, 0, sizeof(*v));
	jskip(j);
	char c = *j->p;
	if (c == '{' || c == '[') {
		v->type = c == '{' ? J_OBJ : J_ARR;
		char close = c == '{' ? '}' : ']';
		j->p++;
		size_t cap = 0;
		jskip(j);
		if (*j->p == close) {
			j->p++;
			return;
		}
		while (!j->bad) {
			if (v->nkids == cap) {
				cap = cap ? cap * 2 : 8;
				v->kids = realloc(v->kids, cap * sizeof(*v->kids));
			}
			char *key = NULL;
			if (v->type == J_OBJ) {
				jskip(j);
				key = jstring(j);
				jskip(j);
				if (*j->p != ':') {
					free(key);
					j->bad = true;
					return;
				}
				j->p++;
			}
			jparse(j, &v->kids[v->nkids]);
			v->kids[v->nkids++].key = key;
			jskip(j);
			if (*j->p == ',') {
				j->p++;
				continue;
			}
			if (*j->p == close) {
				j->p++;
				return;
			}
			j->bad = true;
		}
		return;
	}
	if (c == '"') {
		v->type = J_STR;
		v->str = jstring(j);
		return;
	}
	if (strncmp(j->p, "true", 4) == 0 || strncmp(j->p, "false", 5) == 0) {
		v->type = J_BOOL;
		v->num = *j->p == 't';
		j->p += *j->p == 't' ? 4 : 5;
		return;
	}
	if (strncmp(j->p, "null", 4) == 0) {
		j->p += 4;
		return;
	}
	char *end;
	v->num = strtod(j->p, &end);
	if (end == j->p) {
		j->bad = true;
		return;
	}
	v->type = J_NUM;
	j->p = end;
}

static void jfree(struct jval *v)
{
	for (size_t i = 0; i < v->nkids; i++) {
		free(v->kids[i].key);
		jfree(&v->kids[i]);
	}
	free(v->kids);
	free(v->str);
}

static const struct jval *jget(const struct jval *v, const char *key)
{
	if (!v || v->type != J_OBJ)
		return NULL;
	for (size_t i = 0; i < v->nkids; i++)
		if (v->kids[i].key && strcmp(v->kids[i].key, key) == 0)
			return &v->kids[i];
	return NULL;
}

static double jnum(const struct jval *v, const char *key)
{
	const struct jval *x = jget(v, key);
	return x && (x->type == J_NUM || x->type == J_BOOL) ? x->num : 0.0;
}

static const char *jstr(const struct jval *v, const char *key)
{
	const struct jval *x = jget(v, key);
	return x && x->type == J_STR ? x->str : "";
}

/* ---- the socket ---------------------------------------------------------------- */

/* Sends req and returns the one-line answer (malloc'ed, no newline), or
 * NULL with a message on stderr. */
static char *request(const char *path, const char *req)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return NULL;
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	socklen_t len = sizeof(sa);
	if (path[0] == '@') { /* abstract name */
		size_t n = strlen(path);
		if (n > sizeof(sa.sun_path))
			n = sizeof(sa.sun_path);
		memcpy(sa.sun_path, path, n);
		sa.sun_path[0] = '\0';
		len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
	} else {
		snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	}
	if (connect(fd, (struct sockaddr *)&sa, len) != 0) {
		fprintf(stderr, "zk-top: cannot connect to %s: %s\n", path, strerror(errno));
		close(fd);
		return NULL;
	}
	size_t rl = strlen(req);
	if (write(fd, req, rl) != (ssize_t)rl) {
		close(fd);
		return NULL;
	}
	size_t cap = 1 << 16, have = 0;
	char *buf = malloc(cap);
	for (;;) {
		if (have + 1 >= cap)
			buf = realloc(buf, cap *= 2);
		ssize_t n = read(fd, buf + have, cap - have - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		have += (size_t)n;
		buf[have] = '\0';
		char *nl = memchr(buf, '\n', have);
		if (nl) {
			*nl = '\0';
			close(fd);
			return buf;
		}
	}
	close(fd);
	fprintf(stderr, "zk-top: %s closed the connection without an answer\n", path);
	free(buf);
	return NULL;
}

/* ---- the terminal ---------------------------------------------------------------- */

static struct termios saved_tio;
static bool tio_saved;
static volatile sig_atomic_t stop_flag;

static void restore_terminal(void)
{
	if (tio_saved)
		tcsetattr(STDIN_FILENO, TCSANOW, &saved_tio);
	fputs("\033[?25h\033[?1049l", stdout); /* cursor on, main screen */
	fflush(stdout);
}

static void on_signal(int sig)
{
	(void)sig;
	stop_flag = 1;
}

static void setup_terminal(void)
{
	if (tcgetattr(STDIN_FILENO, &saved_tio) == 0) {
		struct termios t = saved_tio;
		t.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
		t.c_cc[VMIN] = 0;
		t.c_cc[VTIME] = 0;
		tcsetattr(STDIN_FILENO, TCSANOW, &t);
		tio_saved = true;
	}
	fputs("\033[?1049h\033[?25l", stdout); /* alternate screen, cursor off */
	atexit(restore_terminal);
	struct sigaction sa = {.sa_handler = on_signal};
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
}

static void term_size(int *rows, int *cols)
{
	struct winsize ws;
	*rows = 24;
	*cols = 100;
	if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_row && ws.ws_col) {
		*rows = ws.ws_row;
		*cols = ws.ws_col;
	}
}

/* ---- rendering ---------------------------------------------------------------- */

static const char *const rate_keys[] = {"polls", "spawned", "stolen_in", "stolen_out",
					"parks", "lifo_hits", "global_pulls", "submissions",
					"enters", "completions", "timers_fired"};
static const char *const rate_heads[] = {"polls/s", "spawn/s", "steal-in/s", "steal-out/s",
					 "parks/s", "lifo/s", "global/s", "subm/s",
					 "enter/s", "compl/s", "timers/s"};
#define NRATES (sizeof(rate_keys) / sizeof(rate_keys[0]))

static void fmt_ns(char *buf, size_t n, double ns)
{
	if (ns < 1e3)
		snprintf(buf, n, "%.0fns", ns);
	else if (ns < 1e6)
		snprintf(buf, n, "%.1fus", ns / 1e3);
	else if (ns < 1e9)
		snprintf(buf, n, "%.1fms", ns / 1e6);
	else
		snprintf(buf, n, "%.2fs", ns / 1e9);
}

static void hist_line(const char *name, const struct jval *h)
{
	if (!h)
		return;
	char p50[16], p90[16], p99[16], p999[16], mx[16];
	fmt_ns(p50, sizeof(p50), jnum(h, "p50"));
	fmt_ns(p90, sizeof(p90), jnum(h, "p90"));
	fmt_ns(p99, sizeof(p99), jnum(h, "p99"));
	fmt_ns(p999, sizeof(p999), jnum(h, "p999"));
	fmt_ns(mx, sizeof(mx), jnum(h, "max"));
	printf("  %-22s %10.0f %9s %9s %9s %9s %9s\033[K\n", name, jnum(h, "count"), p50, p90, p99,
	       p999, mx);
}

static void rate_row(const char *label, const struct jval *cur, const struct jval *prev,
		     double dt)
{
	printf("%6s", label);
	for (size_t i = 0; i < NRATES; i++) {
		double r = prev && dt > 0 ? (jnum(cur, rate_keys[i]) - jnum(prev, rate_keys[i])) / dt
					  : 0.0;
		printf(" %*.0f", (int)strlen(rate_heads[i]) > 8 ? (int)strlen(rate_heads[i]) : 8, r);
	}
	printf(" %6.0f\033[K\n", jnum(cur, "local_queue_depth"));
}

static void render_metrics(const char *path, const struct jval *m, const struct jval *prev,
			   int rows)
{
	double dt = prev ? (jnum(m, "uptime_ns") - jnum(prev, "uptime_ns")) / 1e9 : 0.0;
	printf("\033[H\033[1mzk-top\033[0m  %s  backend %s  %d workers  up %.1f s%s\033[K\n", path,
	       jstr(m, "backend"), (int)jnum(m, "workers"), jnum(m, "uptime_ns") / 1e9,
	       jnum(m, "enabled") ? "" : "  (metrics compiled out)");
	printf("live tasks %.0f  global queue %.0f  blocking pool %.0f threads, %.0f queued   "
	       "[d] task dump  [q] quit\033[K\n\033[K\n",
	       jnum(m, "live_tasks"), jnum(m, "global_queue_depth"), jnum(m, "blocking_threads"),
	       jnum(m, "blocking_queued"));
	printf("\033[7m%6s", "worker");
	for (size_t i = 0; i < NRATES; i++)
		printf(" %*s", (int)strlen(rate_heads[i]) > 8 ? (int)strlen(rate_heads[i]) : 8,
		       rate_heads[i]);
	printf(" %6s\033[0m\033[K\n", "queue");
	const struct jval *pw = jget(m, "per_worker");
	const struct jval *ppw = prev ? jget(prev, "per_worker") : NULL;
	int used = 4;
	for (size_t i = 0; pw && i < pw->nkids && used < rows - 12; i++, used++) {
		char label[16];
		snprintf(label, sizeof(label), "%zu", i);
		rate_row(label, &pw->kids[i], ppw && i < ppw->nkids ? &ppw->kids[i] : NULL, dt);
	}
	rate_row("all", jget(m, "total"), prev ? jget(prev, "total") : NULL, dt);
	printf("\033[K\n\033[7m  %-22s %10s %9s %9s %9s %9s %9s\033[0m\033[K\n",
	       "latency (sampled)", "samples", "p50", "p90", "p99", "p99.9", "max");
	const struct jval *t = jget(m, "total");
	hist_line("task run per resume", jget(t, "run_ns"));
	hist_line("scheduling delay", jget(t, "sched_delay_ns"));
	const struct jval *io = jget(t, "io_ns");
	used += 6;
	for (size_t i = 0; io && i < io->nkids && used < rows - 1; i++, used++) {
		char name[40];
		snprintf(name, sizeof(name), "io %s", io->kids[i].key);
		hist_line(name, &io->kids[i]);
	}
	printf("\033[J");
}

static void render_dump(const char *path, const struct jval *d, int rows)
{
	const struct jval *ts = jget(d, "tasks");
	size_t n = ts ? ts->nkids : 0;
	printf("\033[H\033[1mzk-top\033[0m  %s  task dump: %zu live tasks   [d] metrics  [q] "
	       "quit\033[K\n\033[K\n",
	       path, n);
	printf("\033[7m%12s %-10s %9s  %-40s %s\033[0m\033[K\n", "id", "state", "waited", "waits on",
	       "spawned at");
	for (size_t i = 0; i < n && (int)i < rows - 4; i++) {
		const struct jval *t = &ts->kids[i];
		const struct jval *w = jget(t, "wait");
		char wait[64] = "-";
		if (w && w->type == J_OBJ) {
			const char *kind = jstr(w, "kind");
			if (strcmp(kind, "io") == 0)
				snprintf(wait, sizeof(wait), "io %s fd %.0f", jstr(w, "op"),
					 jnum(w, "fd"));
			else if (strcmp(kind, "timer") == 0)
				snprintf(wait, sizeof(wait), "timer in %.0f ms", jnum(w, "in_ms"));
			else if (strcmp(kind, "join") == 0)
				snprintf(wait, sizeof(wait), "join task %.0f", jnum(w, "task"));
			else if (jget(w, "object"))
				snprintf(wait, sizeof(wait), "%s %s%s", kind, jstr(w, "object"),
					 jnum(w, "select") ? " (select)" : "");
			else
				snprintf(wait, sizeof(wait), "%s", kind);
		}
		char waited[24] = "";
		if (w && w->type == J_OBJ)
			snprintf(waited, sizeof(waited), "%.0f ms", jnum(t, "waited_ms"));
		printf("%12.0f %-10s %9s  %-40s %s\033[K\n", jnum(t, "id"), jstr(t, "state"), waited,
		       wait, jstr(t, "spawn"));
	}
	printf("\033[J");
}

/* ---- main ----------------------------------------------------------------------- */

static void usage(FILE *f)
{
	fputs("usage: zk-top [--interval MS] [--json | --dump] [SOCKET]\n"
	      "  SOCKET defaults to $ZK_METRICS_SOCK; the process serves it when started\n"
	      "  with ZK_METRICS_SOCK=PATH or after zk_metrics_serve(rt, PATH).\n"
	      "  --json  print one metrics snapshot (JSON) and exit\n"
	      "  --dump  print the task dump (JSON) and exit\n"
	      "  keys: d task dump / metrics, q quit\n",
	      f);
}

int main(int argc, char **argv)
{
	const char *path = getenv("ZK_METRICS_SOCK");
	const char *once = NULL;
	long interval_ms = 1000;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0) {
			once = "json\n";
		} else if (strcmp(argv[i], "--dump") == 0) {
			once = "dump\n";
		} else if (strcmp(argv[i], "--interval") == 0 && i + 1 < argc) {
			interval_ms = strtol(argv[++i], NULL, 10);
			if (interval_ms < 50)
				interval_ms = 50;
		} else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			usage(stdout);
			return 0;
		} else if (argv[i][0] == '-' && argv[i][1]) {
			usage(stderr);
			return 2;
		} else {
			path = argv[i];
		}
	}
	if (!path || !*path) {
		usage(stderr);
		return 2;
	}
	if (once) {
		char *doc = request(path, once);
		if (!doc)
			return 1;
		puts(doc);
		free(doc);
		return 0;
	}
	/* Fail before taking over the terminal if nothing answers. */
	char *doc = request(path, "json\n");
	if (!doc)
		return 1;
	setup_terminal();
	struct jval prev = {0}, cur = {0};
	bool have_prev = false, show_dump = false;
	while (!stop_flag) {
		int rows, cols;
		term_size(&rows, &cols);
		if (!doc)
			doc = request(path, show_dump ? "dump\n" : "json\n");
		if (!doc) {
			printf("\033[H\033[Jzk-top: %s does not answer (process gone?)\n", path);
			fflush(stdout);
			break;
		}
		struct jparser jp = {.p = doc};
		jparse(&jp, &cur);
		free(doc);
		doc = NULL;
		if (jp.bad) {
			jfree(&cur);
			printf("\033[H\033[Jzk-top: malformed answer from %s\n", path);
			fflush(stdout);
			break;
		}
		if (show_dump) {
			render_dump(path, &cur, rows);
			jfree(&cur);
		} else {
			render_metrics(path, &cur, have_prev ? &prev : NULL, rows);
			if (have_prev)
				jfree(&prev);
			prev = cur;
			have_prev = true;
		}
		fflush(stdout);
		struct pollfd pfd = {.fd = STDIN_FILENO, .events = POLLIN};
		int pr = poll(&pfd, 1, (int)interval_ms);
		if (pr > 0) {
			char c;
			if (read(STDIN_FILENO, &c, 1) == 1) {
				if (c == 'q' || c == 'Q')
					break;
				if (c == 'd' || c == 'D')
					show_dump = !show_dump;
			}
		}
	}
	if (have_prev)
		jfree(&prev);
	return 0;
}
