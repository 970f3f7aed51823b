/* benchmarks/net_load.c — the load generator of the network benchmarks
 * (zk-net-load). Plain threads and epoll, no Zokio: the same neutral client
 * drives the Zokio, Tokio and Go servers, so only the server differs.
 *
 *   zk-net-load echo --port P [--conns N] [--threads T] [--size B]
 *                    [--warmup-ms MS] [--duration-ms MS] [--server-pid PID]
 *       N connections split over T threads, each connection a closed loop:
 *       send B bytes, wait for all B back, send again. After the warm-up it
 *       counts the round trips that complete during the measured window and
 *       their latency (send to last byte back). Prints one line:
 *         msgs_per_sec=<x> p50_us=<x> p99_us=<x> conns=<n> errors=<n>
 *       and, with --server-pid, server_cpu_us_per_msg=<x>: the CPU time all
 *       the server's threads used in the window (each thread's schedstat in
 *       /proc) over the round trips in it. On a shared machine that is
 *       steadier than throughput: load from elsewhere takes CPU away from
 *       the server but does not make its work per message bigger.
 *
 *   zk-net-load hold --port P [--conns N] [--window W]
 *       Opens N connections (at most W handshakes in flight, so the server's
 *       accept backlog never overflows into SYN retransmits) and echoes one
 *       byte on each, which proves the server accepted it and has something
 *       serving it. Prints
 *         held=<n> failed=<n> accept_per_sec=<x>
 *       then keeps every connection open, idle, until stdin reaches EOF, so
 *       the caller can read the server's memory meanwhile.
 *
 * Connections are spread over the source addresses 127.0.0.2..127.0.0.251
 * (IP_BIND_ADDRESS_NO_PORT: the port is picked at connect time, per
 * destination), so repeated runs never exhaust ephemeral ports because of
 * sockets in TIME_WAIT. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define MAX_SIZE 65536

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *what)
{
	fprintf(stderr, "zk-net-load: %s: %s\n", what, strerror(errno));
	exit(1);
}

static struct sockaddr_in server;

/* A non-blocking TCP socket bound to the i-th source address, connect
 * started. Returns the fd, or -errno from socket/connect. */
static int start_connect(unsigned i)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
	struct sockaddr_in src = {.sin_family = AF_INET};
	src.sin_addr.s_addr = htonl(0x7f000002u + i % 250);
	if (bind(fd, (struct sockaddr *)&src, sizeof(src)) != 0) {
		int e = -errno;
		close(fd);
		return e;
	}
	if (connect(fd, (struct sockaddr *)&server, sizeof(server)) != 0 && errno != EINPROGRESS) {
		int e = -errno;
		close(fd);
		return e;
	}
	return fd;
}

/* CPU time of all threads of pid in ns (the first field of each thread's
 * schedstat), or 0 if pid is 0 or gone. */
static uint64_t cpu_ns_of(int pid)
{
	if (pid <= 0)
		return 0;
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/task", pid);
	DIR *d = opendir(path);
	if (!d)
		return 0;
	uint64_t sum = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		char p[320];
		snprintf(p, sizeof(p), "/proc/%d/task/%s/schedstat", pid, e->d_name);
		FILE *f = fopen(p, "r");
		unsigned long long ns;
		if (f && fscanf(f, "%llu", &ns) == 1)
			sum += ns;
		if (f)
			fclose(f);
	}
	closedir(d);
	return sum;
}

/* ---- latency histogram ------------------------------------------------------- */

/* Log-linear buckets over nanoseconds (HdrHistogram's layout): values below
 * 2^SUB_BITS get one bucket each, above that every power of two is split in
 * 2^(SUB_BITS-1) buckets, so a bucket is within 1/64 (1.6 %) of its values. */
#define SUB_BITS 7
#define HALF (1u << (SUB_BITS - 1))
#define NBUCKETS (64u * HALF)

static unsigned bucket_of(uint64_t v)
{
	if (v < (1u << SUB_BITS))
		return (unsigned)v;
	unsigned msb = 63u - (unsigned)__builtin_clzll(v);
	unsigned shift = msb - (SUB_BITS - 1);
	return shift * HALF + (unsigned)(v >> shift);
}

/* The middle of bucket b's range. */
static double bucket_value(unsigned b)
{
	if (b < (1u << SUB_BITS))
		return b;
	unsigned shift = b / HALF - 1;
	uint64_t mant = b - shift * HALF;
	return ((double)mant + 0.5) * (double)(1ull << shift);
}

static double percentile(const uint64_t *hist, uint64_t total, double p)
{
	if (total == 0)
		return 0;
	uint64_t rank = (uint64_t)(p * (double)total + 0.5), seen = 0;
	if (rank < 1)
		rank = 1;
	for (unsigned b = 0; b < NBUCKETS; b++) {
		seen += hist[b];
		if (seen >= rank)
			return bucket_value(b);
	}
	return bucket_value(NBUCKETS - 1);
}

/* ---- echo ------------------------------------------------------------------------ */

enum { PHASE_WARMUP, PHASE_MEASURE, PHASE_STOP };
static _Atomic int phase;

static unsigned msg_size = 64;

struct conn {
	int fd;
	unsigned got;     /* bytes of the current message echoed so far */
	uint64_t sent_ns; /* when the current message was sent */
};

struct worker {
	pthread_t thread;
	struct conn *conns;
	unsigned nconns;
	uint64_t count;  /* round trips completed in the measured window */
	uint64_t errors; /* connections lost */
	uint64_t *hist;
};

static const char payload[MAX_SIZE];

static bool send_msg(struct conn *c)
{
	c->got = 0;
	c->sent_ns = now_ns();
	/* A message fits in an empty socket buffer, so a short send is a
	 * protocol error here, not back-pressure. */
	return send(c->fd, payload, msg_size, MSG_NOSIGNAL) == (ssize_t)msg_size;
}

static void *echo_worker(void *arg)
{
	struct worker *w = arg;
	int ep = epoll_create1(EPOLL_CLOEXEC);
	if (ep < 0)
		die("epoll_create1");
	for (unsigned i = 0; i < w->nconns; i++) {
		struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &w->conns[i]};
		if (epoll_ctl(ep, EPOLL_CTL_ADD, w->conns[i].fd, &ev) != 0)
			die("epoll_ctl");
		if (!send_msg(&w->conns[i]))
			die("send");
	}
	char sink[MAX_SIZE];
	struct epoll_event evs[256];
	unsigned live = w->nconns;
	while (live > 0) {
		int p = atomic_load_explicit(&phase, memory_order_relaxed);
		if (p == PHASE_STOP)
			break;
		int n = epoll_wait(ep, evs, 256, 100);
		for (int i = 0; i < n; i++) {
			struct conn *c = evs[i].data.ptr;
			ssize_t r = recv(c->fd, sink, msg_size - c->got, 0);
			if (r < 0 && (errno == EAGAIN || errno == EINTR))
				continue;
			if (r <= 0) {
				w->errors++;
				epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
				live--;
				continue;
			}
			c->got += (unsigned)r;
			if (c->got < msg_size)
				continue;
			uint64_t t = now_ns();
			if (atomic_load_explicit(&phase, memory_order_relaxed) == PHASE_MEASURE) {
				w->count++;
				w->hist[bucket_of(t - c->sent_ns)]++;
			}
			if (!send_msg(c)) {
				w->errors++;
				epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
				live--;
			}
		}
	}
	close(ep);
	return NULL;
}

/* Connects all n sockets before any load starts: connect in batches, then
 * wait for every handshake, so no connection starts late. */
static void connect_all(struct conn *conns, unsigned n)
{
	int ep = epoll_create1(EPOLL_CLOEXEC);
	if (ep < 0)
		die("epoll_create1");
	unsigned pending = 0;
	for (unsigned i = 0; i < n; i++) {
		int fd = start_connect(i);
		if (fd < 0) {
			errno = -fd;
			die("connect");
		}
		conns[i].fd = fd;
		struct epoll_event ev = {.events = EPOLLOUT, .data.u32 = i};
		if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0)
			die("epoll_ctl");
		pending++;
	}
	struct epoll_event evs[256];
	while (pending > 0) {
		int k = epoll_wait(ep, evs, 256, 10000);
		if (k == 0) {
			fprintf(stderr, "zk-net-load: %u connections not established after 10 s\n",
				pending);
			exit(1);
		}
		for (int i = 0; i < k; i++) {
			int fd = conns[evs[i].data.u32].fd, err = 0;
			socklen_t len = sizeof(err);
			getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
			if (err) {
				errno = err;
				die("connect");
			}
			epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
			pending--;
		}
	}
	close(ep);
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static int run_echo(unsigned nconns, unsigned nthreads, unsigned warmup_ms, unsigned duration_ms,
		    int server_pid)
{
	if (nthreads > nconns)
		nthreads = nconns;
	struct conn *conns = calloc(nconns, sizeof(*conns));
	struct worker *ws = calloc(nthreads, sizeof(*ws));
	if (!conns || !ws)
		die("calloc");
	connect_all(conns, nconns);
	unsigned next = 0;
	for (unsigned t = 0; t < nthreads; t++) {
		ws[t].nconns = nconns / nthreads + (t < nconns % nthreads);
		ws[t].conns = conns + next;
		next += ws[t].nconns;
		ws[t].hist = calloc(NBUCKETS, sizeof(uint64_t));
		if (!ws[t].hist)
			die("calloc");
	}
	atomic_store(&phase, PHASE_WARMUP);
	for (unsigned t = 0; t < nthreads; t++)
		if (pthread_create(&ws[t].thread, NULL, echo_worker, &ws[t]) != 0)
			die("pthread_create");
	sleep_ms(warmup_ms);
	uint64_t cpu0 = cpu_ns_of(server_pid), t0 = now_ns();
	atomic_store(&phase, PHASE_MEASURE);
	sleep_ms(duration_ms);
	atomic_store(&phase, PHASE_STOP);
	uint64_t t1 = now_ns(), cpu1 = cpu_ns_of(server_pid);
	uint64_t count = 0, errors = 0;
	uint64_t *hist = calloc(NBUCKETS, sizeof(uint64_t));
	if (!hist)
		die("calloc");
	for (unsigned t = 0; t < nthreads; t++) {
		pthread_join(ws[t].thread, NULL);
		count += ws[t].count;
		errors += ws[t].errors;
		for (unsigned b = 0; b < NBUCKETS; b++)
			hist[b] += ws[t].hist[b];
	}
	printf("msgs_per_sec=%.0f p50_us=%.1f p99_us=%.1f conns=%u errors=%llu",
	       (double)count * 1e9 / (double)(t1 - t0), percentile(hist, count, 0.50) / 1e3,
	       percentile(hist, count, 0.99) / 1e3, nconns, (unsigned long long)errors);
	if (server_pid > 0 && count > 0)
		printf(" server_cpu_us_per_msg=%.3f", (double)(cpu1 - cpu0) / 1e3 / (double)count);
	putchar('\n');
	fflush(stdout);
	for (unsigned i = 0; i < nconns; i++)
		close(conns[i].fd);
	return errors ? 1 : 0;
}

/* ---- hold ------------------------------------------------------------------------ */

/* Per connection: connecting (waiting for EPOLLOUT), then waiting for the
 * echoed byte, then idle. */
enum { HOLD_CONNECTING, HOLD_ECHO, HOLD_IDLE };

static int run_hold(unsigned nconns, unsigned window)
{
	int *fds = calloc(nconns, sizeof(int));
	unsigned char *state = calloc(nconns, 1);
	if (!fds || !state)
		die("calloc");
	int ep = epoll_create1(EPOLL_CLOEXEC);
	if (ep < 0)
		die("epoll_create1");
	unsigned started = 0, inflight = 0, held = 0, failed = 0;
	bool out_of_fds = false;
	uint64_t t0 = now_ns(), last_progress = t0;
	struct epoll_event evs[256];
	for (;;) {
		while (!out_of_fds && started < nconns && inflight < window) {
			int fd = start_connect(started);
			if (fd == -EMFILE || fd == -ENFILE) {
				out_of_fds = true;
				break;
			}
			if (fd < 0) {
				failed++, started++;
				continue;
			}
			struct epoll_event ev = {.events = EPOLLOUT, .data.u32 = started};
			if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0)
				die("epoll_ctl");
			fds[started] = fd;
			state[started++] = HOLD_CONNECTING;
			inflight++;
		}
		if (inflight == 0)
			break;
		int k = epoll_wait(ep, evs, 256, 200);
		uint64_t t = now_ns();
		if (k <= 0) {
			/* No handshake or echo for 3 s: the server holds no
			 * more (out of descriptors or memory). */
			if (t - last_progress > 3000000000ull)
				break;
			continue;
		}
		last_progress = t;
		for (int i = 0; i < k; i++) {
			unsigned c = evs[i].data.u32;
			int fd = fds[c];
			if (state[c] == HOLD_CONNECTING) {
				int err = 0;
				socklen_t len = sizeof(err);
				getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
				if (err || send(fd, "x", 1, MSG_NOSIGNAL) != 1) {
					epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
					close(fd);
					fds[c] = -1;
					failed++, inflight--;
					continue;
				}
				state[c] = HOLD_ECHO;
				struct epoll_event ev = {.events = EPOLLIN, .data.u32 = c};
				epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
			} else {
				char b;
				ssize_t r = recv(fd, &b, 1, 0);
				if (r < 0 && errno == EAGAIN)
					continue;
				epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
				inflight--;
				if (r == 1) {
					state[c] = HOLD_IDLE;
					held++;
				} else {
					close(fd);
					fds[c] = -1;
					failed++;
				}
			}
		}
	}
	uint64_t t1 = now_ns();
	/* What never finished counts as failed. */
	failed += inflight + (nconns - started);
	printf("held=%u failed=%u accept_per_sec=%.0f\n", held, failed,
	       (double)held * 1e9 / (double)(t1 - t0 > 0 ? t1 - t0 : 1));
	fflush(stdout);
	/* Hold until the caller is done measuring. */
	char b[64];
	while (read(STDIN_FILENO, b, sizeof(b)) > 0)
		;
	return 0;
}

/* ---- main ------------------------------------------------------------------------ */

static void usage(FILE *f)
{
	fprintf(f, "usage: zk-net-load echo --port P [--host A] [--conns N] [--threads T] [--size B]\n"
		   "                        [--warmup-ms MS] [--duration-ms MS] [--server-pid PID]\n"
		   "       zk-net-load hold --port P [--host A] [--conns N] [--window W]\n");
}

static unsigned parse_u(const char *flag, const char *v, unsigned min, unsigned max)
{
	char *end;
	unsigned long x = v ? strtoul(v, &end, 10) : 0;
	if (!v || *end || x < min || x > max) {
		fprintf(stderr, "zk-net-load: bad value for %s\n", flag);
		usage(stderr);
		exit(2);
	}
	return (unsigned)x;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	const char *mode = argv[1], *host = "127.0.0.1";
	unsigned port = 0, conns = 100, threads = 1, window = 64;
	unsigned warmup_ms = 500, duration_ms = 2000, server_pid = 0;
	for (int i = 2; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (strcmp(a, "--host") == 0 && v)
			host = v;
		else if (strcmp(a, "--port") == 0)
			port = parse_u(a, v, 1, 65535);
		else if (strcmp(a, "--conns") == 0)
			conns = parse_u(a, v, 1, 1000000);
		else if (strcmp(a, "--threads") == 0)
			threads = parse_u(a, v, 1, 256);
		else if (strcmp(a, "--size") == 0)
			msg_size = parse_u(a, v, 1, MAX_SIZE);
		else if (strcmp(a, "--window") == 0)
			window = parse_u(a, v, 1, 100000);
		else if (strcmp(a, "--warmup-ms") == 0)
			warmup_ms = parse_u(a, v, 0, 600000);
		else if (strcmp(a, "--duration-ms") == 0)
			duration_ms = parse_u(a, v, 1, 600000);
		else if (strcmp(a, "--server-pid") == 0)
			server_pid = parse_u(a, v, 1, 1u << 30);
		else {
			usage(stderr);
			return 2;
		}
		i++;
	}
	server.sin_family = AF_INET;
	server.sin_port = htons((uint16_t)port);
	if (port == 0 || inet_pton(AF_INET, host, &server.sin_addr) != 1) {
		usage(stderr);
		return 2;
	}
	if (strcmp(mode, "echo") == 0)
		return run_echo(conns, threads, warmup_ms, duration_ms, (int)server_pid);
	if (strcmp(mode, "hold") == 0)
		return run_hold(conns, window);
	usage(stderr);
	return 2;
}
