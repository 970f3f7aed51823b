/* benchmarks/dns_bench.c — cached DNS lookups per second (zk-dns-bench).
 *
 * TASKS tasks on W workers each resolve a cached name LOOKUPS times with
 * zk_dns_lookup; the name is "localhost", answered once from /etc/hosts and
 * then from the resolver's cache (hosts_ttl_s is set far beyond the run), so
 * the figure is the cache-hit path alone: validation, hashing, the resolver
 * lock, the copy. For scale, the same number of lookups through glibc's
 * getaddrinfo() on W plain threads (no cache: it reads /etc/hosts each time;
 * it is what tokio::net::lookup_host runs on Tokio's blocking pool) is
 * printed as runtime=getaddrinfo. Output, one line per figure:
 *
 *   bench=dns_cached_lookup runtime=zokio workers=<W> median_ns=<n> ops_per_sec=<x>
 *
 * Options: --workers W (default 1), --iters N (default 5), --lookups N
 * (per task, default 20000). Notes go to stderr. */
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "zokio/zokio.h"

#define TASKS_PER_WORKER 4u
#define NAME "localhost"

static unsigned workers = 1, iters = 5, lookups = 20000;

struct run {
	zk_dns_t *r;
	unsigned ntasks;
	int bad;
};

static void *lookup_loop(void *arg)
{
	struct run *run = arg;
	struct sockaddr_storage a[4];
	for (unsigned i = 0; i < lookups; i++)
		if (zk_dns_lookup(run->r, NAME, AF_INET, a, 4) != 1)
			__atomic_fetch_add(&run->bad, 1, __ATOMIC_RELAXED);
	return NULL;
}

static void *fan_out(void *arg)
{
	struct run *run = arg;
	zk_task_t **t = calloc(run->ntasks, sizeof(*t));
	if (!t)
		return NULL;
	for (unsigned i = 0; i < run->ntasks; i++)
		if (zk_spawn(&t[i], lookup_loop, run) < 0)
			abort();
	for (unsigned i = 0; i < run->ntasks; i++)
		zk_join(t[i], NULL);
	free(t);
	return NULL;
}

static void *gai_loop(void *arg)
{
	int *bad = arg;
	struct addrinfo hints = {.ai_family = AF_INET}, *res;
	for (unsigned i = 0; i < lookups * TASKS_PER_WORKER; i++) {
		if (getaddrinfo(NAME, NULL, &hints, &res) != 0) {
			__atomic_fetch_add(bad, 1, __ATOMIC_RELAXED);
			continue;
		}
		freeaddrinfo(res);
	}
	return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static void report(const char *runtime, uint64_t *ns, unsigned n, uint64_t ops)
{
	qsort(ns, n, sizeof(ns[0]), cmp_u64);
	uint64_t med = ns[n / 2];
	printf("bench=dns_cached_lookup runtime=%s workers=%u median_ns=%" PRIu64
	       " ops_per_sec=%.0f\n",
	       runtime, workers, med, (double)ops * 1e9 / (double)med);
}

int main(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		if (i + 1 < argc && strcmp(argv[i], "--workers") == 0)
			workers = (unsigned)atoi(argv[++i]);
		else if (i + 1 < argc && strcmp(argv[i], "--iters") == 0)
			iters = (unsigned)atoi(argv[++i]);
		else if (i + 1 < argc && strcmp(argv[i], "--lookups") == 0)
			lookups = (unsigned)atoi(argv[++i]);
		else {
			fprintf(stderr, "usage: zk-dns-bench [--workers W] [--iters N] [--lookups N]\n");
			return 2;
		}
	}
	if (workers == 0 || iters == 0 || lookups == 0 || iters > 1000) {
		fprintf(stderr, "zk-dns-bench: bad arguments\n");
		return 2;
	}
	uint64_t *ns = calloc(iters, sizeof(*ns));
	zk_runtime_t *rt;
	zk_config_t cfg = {.workers = workers};
	int rc = zk_runtime_create(&rt, &cfg);
	zk_dns_config_t dcfg = {.hosts_ttl_s = 86400, .max_ttl_s = 86400};
	zk_dns_t *r;
	if (!ns || rc < 0 || (rc = zk_dns_create(&r, &dcfg)) < 0) {
		fprintf(stderr, "zk-dns-bench: setup failed: %s\n", strerror(rc < 0 ? -rc : ENOMEM));
		return 1;
	}
	struct run run = {.r = r, .ntasks = workers * TASKS_PER_WORKER};
	/* Warm-up: fills the cache (one /etc/hosts read) and the task pools. */
	zk_block_on(rt, fan_out, &run, NULL);
	for (unsigned it = 0; it < iters; it++) {
		uint64_t t0 = zk_now_ns();
		zk_block_on(rt, fan_out, &run, NULL);
		ns[it] = zk_now_ns() - t0;
	}
	zk_dns_stats_t st;
	zk_dns_stats(r, &st);
	fprintf(stderr, "# zokio: %" PRIu64 " lookups, %" PRIu64 " cache hits, %" PRIu64
			" resolves\n",
		st.lookups, st.cache_hits, st.resolves);
	if (run.bad || st.resolves != 1) {
		fprintf(stderr, "zk-dns-bench: %d failed lookups, %" PRIu64 " resolves\n", run.bad,
			st.resolves);
		return 1;
	}
	report("zokio", ns, iters, (uint64_t)run.ntasks * lookups);
	zk_dns_free(r);
	zk_runtime_free(rt);

	int bad = 0;
	pthread_t *th = calloc(workers, sizeof(*th));
	for (unsigned it = 0; it < iters && th; it++) {
		uint64_t t0 = zk_now_ns();
		for (unsigned w = 0; w < workers; w++)
			pthread_create(&th[w], NULL, gai_loop, &bad);
		for (unsigned w = 0; w < workers; w++)
			pthread_join(th[w], NULL);
		ns[it] = zk_now_ns() - t0;
	}
	if (bad) {
		fprintf(stderr, "zk-dns-bench: %d getaddrinfo failures\n", bad);
		return 1;
	}
	report("getaddrinfo", ns, iters, (uint64_t)workers * TASKS_PER_WORKER * lookups);
	free(th);
	free(ns);
	return 0;
}
