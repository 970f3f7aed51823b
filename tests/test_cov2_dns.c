/* tests/test_cov2_dns.c — dns.h answers the dnsmasq suite cannot make: a
 * plain UDP socket of the test on 127.0.0.1, answered by a helper thread,
 * replies with an address whose TTL is far above
 * max_ttl_s (answered, and cached no longer than max_ttl_s), and two
 * different names looked up together while the first is still in flight
 * (the second query reaches the server while the resolver's driver already
 * waits); a lookup by a task already cancelled (-ECANCELED, no query);
 * SERVFAIL and REFUSED answers (-ECONNREFUSED, as c-ares reports them). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "helpers.h"

TestSuite(cov2_dns, .timeout = 60);

struct server {
	int fd;
	int port;
	int answer; /* queries to answer before the thread ends */
	int hold;   /* queries to collect before answering any */
	atomic_long answered;
};

static void qname(const unsigned char *q, size_t n, char *out, size_t cap)
{
	size_t off = 12, o = 0;
	while (off < n && q[off] && o + 1 < cap) {
		unsigned l = q[off++];
		for (unsigned i = 0; i < l && off < n && o + 2 < cap; i++)
			out[o++] = (char)q[off++];
		out[o++] = '.';
	}
	out[o] = '\0';
}

/* Builds the reply to query q by its name: "servfail.*" rcode 2,
 * "refused.*" rcode 5, "bigttl.*" an A record 10.9.8.7 with a TTL of a
 * million seconds, anything else an A record 10.0.0.<first letter>; an
 * AAAA query of a name that has an address gets an empty answer. */
static size_t reply(const unsigned char *q, size_t n, unsigned char *a)
{
	size_t off = 12;
	while (off < n && q[off])
		off += q[off] + 1u;
	off += 1 + 4;
	if (off > n)
		return 0;
	char name[256];
	qname(q, n, name, sizeof(name));
	memcpy(a, q, off);
	a[2] = (unsigned char)(0x80 | (q[2] & 0x01));
	a[3] = 0x80;
	a[4] = 0, a[5] = 1;
	a[6] = a[7] = a[8] = a[9] = a[10] = a[11] = 0;
	if (strncmp(name, "servfail.", 9) == 0) {
		a[3] |= 2;
		return off;
	}
	if (strncmp(name, "refused.", 8) == 0) {
		a[3] |= 5;
		return off;
	}
	bool is_a = q[off - 4] == 0 && q[off - 3] == 1;
	if (!is_a)
		return off;
	uint32_t ttl = strncmp(name, "bigttl.", 7) == 0 ? 1000000u : 30u;
	unsigned char rr[16] = {0xc0, 0x0c, 0, 1, 0, 1, (unsigned char)(ttl >> 24),
				(unsigned char)(ttl >> 16), (unsigned char)(ttl >> 8),
				(unsigned char)ttl, 0, 4, 10, 0, 0, (unsigned char)name[0]};
	if (ttl == 1000000u)
		rr[12] = 10, rr[13] = 9, rr[14] = 8, rr[15] = 7;
	a[7] = 1;
	memcpy(a + off, rr, sizeof(rr));
	return off + sizeof(rr);
}

static void *serve(void *arg)
{
	struct server *s = arg;
	unsigned char q[16][512];
	size_t qn[16];
	struct sockaddr_storage from[16];
	socklen_t fl[16];
	int have = 0, done = 0;
	while (done < s->answer) {
		struct pollfd p = {.fd = s->fd, .events = POLLIN};
		if (poll(&p, 1, 20000) != 1) {
			zt_fail(__FILE__, __LINE__, "no query came (%d answered)", done);
			return NULL;
		}
		fl[have] = sizeof(from[have]);
		ssize_t n = recvfrom(s->fd, q[have], sizeof(q[have]), 0,
				     (struct sockaddr *)&from[have], &fl[have]);
		if (n < 12)
			continue;
		qn[have++] = (size_t)n;
		if (have < s->hold && have < 16)
			continue;
		for (int i = 0; i < have; i++) {
			unsigned char a[600];
			size_t len = reply(q[i], qn[i], a);
			if (len && sendto(s->fd, a, len, 0, (struct sockaddr *)&from[i], fl[i]) ==
				       (ssize_t)len) {
				done++;
				atomic_fetch_add(&s->answered, 1);
			}
		}
		have = 0;
		s->hold = 1;
	}
	return NULL;
}

static void server_start(struct server *s, pthread_t *th)
{
	s->fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	cr_assert_geq(s->fd, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	cr_assert_eq(bind(s->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	s->port = zk_socket_port(s->fd);
	cr_assert_gt(s->port, 0);
	cr_assert_eq(pthread_create(th, NULL, serve, s), 0);
}

static zk_dns_t *resolver(const struct server *s, unsigned max_ttl_s)
{
	char servers[64];
	snprintf(servers, sizeof(servers), "127.0.0.1:%d", s->port);
	zk_dns_config_t cfg = {.servers = servers, .timeout_ms = 5000, .tries = 1,
			       .flags = ZK_DNS_NO_HOSTS, .max_ttl_s = max_ttl_s};
	zk_dns_t *r = NULL;
	int rc = zk_dns_create(&r, &cfg);
	cr_assert_eq(rc, 0, "zk_dns_create = %d", rc);
	return r;
}

struct lk {
	zk_dns_t *r;
	const char *name;
	int res;
	struct sockaddr_storage a[4];
};

static void *lookup_task(void *arg)
{
	struct lk *l = arg;
	l->res = zk_dns_lookup(l->r, l->name, AF_INET, l->a, 4);
	return NULL;
}

static uint32_t v4(const struct sockaddr_storage *ss)
{
	return ntohl(((const struct sockaddr_in *)ss)->sin_addr.s_addr);
}

static void *bigttl_main(void *arg)
{
	zk_dns_t *r = arg;
	struct lk l = {.r = r, .name = "bigttl.cov2.test"};
	lookup_task(&l);
	ZT_CHECK_EQ(l.res, 1);
	ZT_CHECK_EQ(v4(&l.a[0]), 0x0a090807u);
	/* Now from the cache: no query. */
	lookup_task(&l);
	ZT_CHECK_EQ(l.res, 1);
	zk_dns_stats_t st;
	ZT_CHECK_EQ(zk_dns_stats(r, &st), 0);
	ZT_CHECK_EQ(st.cache_hits, 1);
	return NULL;
}

Test(cov2_dns, a_ttl_above_the_cap)
{
	struct server s = {.answer = 1, .hold = 1};
	pthread_t th;
	server_start(&s, &th);
	zk_dns_t *r = resolver(&s, 60);
	zk_runtime_t *rt = zt_runtime(1);
	zt_run(rt, bigttl_main, r);
	zk_dns_free(r);
	zk_runtime_free(rt);
	pthread_join(th, NULL);
	zt_assert_no_failures();
	cr_assert_eq(atomic_load(&s.answered), 1);
	close(s.fd);
}

/* c-ares ends a query that every server answered SERVFAIL or REFUSED as if
 * none could be reached: -ECONNREFUSED (dns.h says so). */
static void *refusals_main(void *arg)
{
	zk_dns_t *r = arg;
	struct lk l = {.r = r, .name = "servfail.cov2.test"};
	lookup_task(&l);
	ZT_CHECK_EQ(l.res, -ECONNREFUSED);
	l = (struct lk){.r = r, .name = "refused.cov2.test"};
	lookup_task(&l);
	ZT_CHECK_EQ(l.res, -ECONNREFUSED);
	return NULL;
}

Test(cov2_dns, servfail_and_refused_answers_are_econnrefused)
{
	struct server s = {.answer = 2, .hold = 1};
	pthread_t th;
	server_start(&s, &th);
	zk_dns_t *r = resolver(&s, 60);
	zk_runtime_t *rt = zt_runtime(1);
	zt_run(rt, refusals_main, r);
	zk_dns_free(r);
	zk_runtime_free(rt);
	pthread_join(th, NULL);
	zt_assert_no_failures();
	cr_assert_eq(atomic_load(&s.answered), 2);
	close(s.fd);
}

static void *two_names_main(void *arg)
{
	zk_dns_t *r = arg;
	struct lk a = {.r = r, .name = "alpha.cov2.test"}, b = {.r = r, .name = "beta.cov2.test"};
	zk_task_t *ta, *tb;
	ZT_CHECK_EQ(zk_spawn(&ta, lookup_task, &a), 0);
	ZT_CHECK_EQ(zk_spawn(&tb, lookup_task, &b), 0);
	ZT_CHECK_EQ(zk_join(ta, NULL), 0);
	ZT_CHECK_EQ(zk_join(tb, NULL), 0);
	ZT_CHECK_EQ(a.res, 1);
	ZT_CHECK_EQ(b.res, 1);
	ZT_CHECK_EQ(v4(&a.a[0]), 0x0a000000u | 'a');
	ZT_CHECK_EQ(v4(&b.a[0]), 0x0a000000u | 'b');
	zk_dns_stats_t st;
	ZT_CHECK_EQ(zk_dns_stats(r, &st), 0);
	ZT_CHECK_EQ(st.resolves, 2);
	ZT_CHECK_EQ(st.coalesced, 0);
	return NULL;
}

Test(cov2_dns, two_names_in_flight_together)
{
	/* The server answers only once both queries came. */
	struct server s = {.answer = 2, .hold = 2};
	pthread_t th;
	server_start(&s, &th);
	zk_dns_t *r = resolver(&s, 0);
	zk_runtime_t *rt = zt_runtime(2);
	zt_run(rt, two_names_main, r);
	zk_dns_free(r);
	zk_runtime_free(rt);
	pthread_join(th, NULL);
	zt_assert_no_failures();
	close(s.fd);
}

/* A cancelled task's lookup of a name not in the cache ends at once with
 * -ECANCELED and sends no query. */
struct late_lookup {
	zk_dns_t *r;
	zk_notify_t n;
	int wait_res, res;
};

static void *cancelled_lookup(void *arg)
{
	struct late_lookup *l = arg;
	l->wait_res = zk_notify_wait(&l->n);
	struct sockaddr_storage a[2];
	l->res = zk_dns_lookup(l->r, "late.cov2.test", AF_INET, a, 2);
	return NULL;
}

static void *cancelled_lookup_main(void *arg)
{
	struct late_lookup *l = arg;
	ZT_CHECK_EQ(zk_notify_init(&l->n), 0);
	zk_task_t *t;
	ZT_CHECK_EQ(zk_spawn(&t, cancelled_lookup, l), 0);
	zk_yield();
	ZT_CHECK_EQ(zk_cancel(t), 0);
	ZT_CHECK_EQ(zk_join(t, NULL), 0);
	ZT_CHECK_EQ(l->wait_res, -ECANCELED);
	ZT_CHECK_EQ(l->res, -ECANCELED);
	zk_dns_stats_t st;
	ZT_CHECK_EQ(zk_dns_stats(l->r, &st), 0);
	ZT_CHECK_EQ(st.resolves, 0);
	zk_notify_destroy(&l->n);
	return NULL;
}

Test(cov2_dns, a_cancelled_task_looks_nothing_up)
{
	/* A server that must see no query (the thread is not started). */
	struct server s = {.answer = 0};
	s.fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	cr_assert_geq(s.fd, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	cr_assert_eq(bind(s.fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	s.port = zk_socket_port(s.fd);
	struct late_lookup l = {.r = resolver(&s, 0), .wait_res = 99, .res = 99};
	zk_runtime_t *rt = zt_runtime(1);
	zt_run(rt, cancelled_lookup_main, &l);
	zk_dns_free(l.r);
	zk_runtime_free(rt);
	char buf[512];
	cr_assert_lt(recv(s.fd, buf, sizeof(buf), MSG_DONTWAIT), 0, "a query was sent");
	close(s.fd);
}
