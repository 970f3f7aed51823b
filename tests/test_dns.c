/* tests/test_dns.c — dns.h against real DNS servers on 127.0.0.1: a dnsmasq
 * started per test with a private configuration (queries counted in its
 * log), and, where a test must control when an answer comes or that none
 * does, a plain UDP socket of the test that reads queries and answers by
 * hand or never. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"

#define DNSMASQ "/usr/sbin/dnsmasq"

/* ---- the dnsmasq fixture ----------------------------------------------------------- */

static struct {
	pid_t pid;
	int port;
	char *dir;
	char log[512];
	char err[512];    /* dnsmasq's stderr, shown when it does not start */
	char servers[64]; /* "127.0.0.1:port" for zk_dns_config_t.servers */
} dm;

static int udp_socket_on_loopback(int *port)
{
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	cr_assert_geq(fd, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	*port = zk_socket_port(fd);
	cr_assert_gt(*port, 0);
	return fd;
}

/* Lines of dnsmasq's log containing what. */
static int log_count(const char *what)
{
	FILE *f = fopen(dm.log, "r");
	if (!f)
		return 0;
	char line[1024];
	int n = 0;
	while (fgets(line, sizeof(line), f))
		if (strstr(line, what))
			n++;
	fclose(f);
	return n;
}

/* Sends one A query for name to dnsmasq and waits up to 1 s for a reply. */
static bool probe(const char *name)
{
	int port;
	int fd = udp_socket_on_loopback(&port);
	unsigned char q[256] = {0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0};
	size_t off = 12;
	for (const char *p = name; *p;) {
		const char *dot = strchr(p, '.');
		size_t l = dot ? (size_t)(dot - p) : strlen(p);
		q[off++] = (unsigned char)l;
		memcpy(q + off, p, l);
		off += l;
		p += l + (dot ? 1 : 0);
	}
	q[off++] = 0;
	q[off++] = 0, q[off++] = 1, q[off++] = 0, q[off++] = 1;
	struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons((uint16_t)dm.port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	sendto(fd, q, off, 0, (struct sockaddr *)&to, sizeof(to));
	struct pollfd pfd = {.fd = fd, .events = POLLIN};
	bool ok = poll(&pfd, 1, 1000) == 1;
	close(fd);
	return ok;
}

/* A port free for both UDP and TCP on 127.0.0.1 (dnsmasq binds both), drawn
 * at random: the kernel's port-0 choice can repeat a port another test's
 * server holds over TCP. */
static int free_port(void)
{
	for (int i = 0; i < 200; i++) {
		int port = 20000 + (int)(random() % 40000);
		struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
					 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
		int u = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
		int t = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		bool ok = u >= 0 && t >= 0 && bind(u, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
			  bind(t, (struct sockaddr *)&sa, sizeof(sa)) == 0;
		close(u);
		close(t);
		if (ok)
			return port;
	}
	cr_assert_fail("no free port");
	return -1;
}

static bool try_start(void)
{
	dm.port = free_port();
	snprintf(dm.servers, sizeof(dm.servers), "127.0.0.1:%d", dm.port);
	char port_arg[32], log_arg[600];
	snprintf(port_arg, sizeof(port_arg), "--port=%d", dm.port);
	snprintf(log_arg, sizeof(log_arg), "--log-facility=%s", dm.log);
	char *const argv[] = {
	    DNSMASQ, "--no-daemon", port_arg, "--listen-address=127.0.0.1", "--bind-interfaces",
	    "--no-resolv", "--no-hosts", "--log-queries", log_arg, "--conf-file=/dev/null",
	    /* Names under .test that are not configured are NXDOMAIN. */
	    "--local=/test/", "--local-ttl=300",
	    "--host-record=a.test,10.0.0.1",
	    "--host-record=dual.test,10.0.0.2,fd00::2",
	    "--host-record=short.test,10.0.0.3,1", /* TTL 1 s */
	    "--host-record=loop.test,127.0.0.1",
	    "--host-record=both.test,127.0.0.1,::1",
	    "--address=/w.test/10.0.0.5", /* any name under w.test */
	    NULL};
	pid_t parent = getpid();
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		/* Dies with the test process even if the test crashes. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(127);
		int nul = open("/dev/null", O_RDWR);
		int err = open(dm.err, O_WRONLY | O_CREAT | O_APPEND, 0644);
		dup2(nul, 0);
		dup2(nul, 1);
		dup2(err >= 0 ? err : nul, 2);
		execv(DNSMASQ, argv);
		_exit(127);
	}
	dm.pid = pid;
	for (int i = 0; i < 500; i++) {
		int st;
		if (waitpid(pid, &st, WNOHANG) == pid) {
			dm.pid = 0; /* could not bind, most likely: another port */
			return false;
		}
		if (log_count("started, version") > 0 && probe("ready.test"))
			return true;
		zt_msleep(10);
	}
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	dm.pid = 0;
	return false;
}

static void dm_start(void)
{
	if (access(DNSMASQ, X_OK) != 0)
		cr_skip_test("dnsmasq is not installed (apt-get install dnsmasq-base)");
	srandom((unsigned)getpid() ^ (unsigned)zk_now_ns());
	dm.dir = zt_tmpdir();
	snprintf(dm.log, sizeof(dm.log), "%s/dnsmasq.log", dm.dir);
	snprintf(dm.err, sizeof(dm.err), "%s/dnsmasq.err", dm.dir);
	for (int attempt = 0; attempt < 5; attempt++)
		if (try_start())
			return;
	char msg[2048] = "";
	FILE *f = fopen(dm.err, "r");
	if (f) {
		size_t n = fread(msg, 1, sizeof(msg) - 1, f);
		msg[n] = '\0';
		fclose(f);
	}
	cr_assert_fail("dnsmasq did not start: %s", msg);
}

static void dm_stop(void)
{
	if (dm.pid > 0) {
		kill(dm.pid, SIGTERM);
		waitpid(dm.pid, NULL, 0);
		dm.pid = 0;
	}
	if (dm.dir) {
		zt_rmtree(dm.dir);
		dm.dir = NULL;
	}
}

/* Waits until the log shows want queries matching what (dnsmasq logs each
 * query as it receives it), then a little longer to catch any extra one,
 * and returns the count. */
static int queries(const char *what, int want)
{
	for (int i = 0; i < 200 && log_count(what) < want; i++)
		zt_msleep(10);
	zt_msleep(100);
	return log_count(what);
}

TestSuite(dns, .init = dm_start, .fini = dm_stop, .timeout = 60);

/* ---- helpers run in tasks ------------------------------------------------------------- */

static zk_dns_t *resolver(const char *servers, unsigned timeout_ms, unsigned tries, unsigned flags)
{
	zk_dns_config_t cfg = {.servers = servers, .timeout_ms = timeout_ms, .tries = tries,
			       .flags = flags, .neg_ttl_s = 1};
	zk_dns_t *r = NULL;
	int rc = zk_dns_create(&r, &cfg);
	cr_assert_eq(rc, 0, "zk_dns_create = %d", rc);
	return r;
}

struct lk {
	zk_dns_t *r;
	const char *name;
	int family;
	int res;
	struct sockaddr_storage addrs[8];
	double ms;
};

static void *lookup_task(void *arg)
{
	struct lk *l = arg;
	uint64_t t0 = zk_now_ns();
	l->res = zk_dns_lookup(l->r, l->name, l->family, l->addrs, 8);
	l->ms = zt_ms_since(t0);
	return NULL;
}

static struct lk lookup(zk_runtime_t *rt, zk_dns_t *r, const char *name, int family)
{
	struct lk l = {.r = r, .name = name, .family = family};
	zt_run(rt, lookup_task, &l);
	return l;
}

static bool has_v4(const struct lk *l, const char *ip)
{
	struct in_addr a;
	inet_pton(AF_INET, ip, &a);
	for (int i = 0; i < l->res; i++) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)&l->addrs[i];
		if (sin->sin_family == AF_INET && sin->sin_addr.s_addr == a.s_addr &&
		    sin->sin_port == 0)
			return true;
	}
	return false;
}

static bool has_v6(const struct lk *l, const char *ip)
{
	struct in6_addr a;
	inet_pton(AF_INET6, ip, &a);
	for (int i = 0; i < l->res; i++) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&l->addrs[i];
		if (s6->sin6_family == AF_INET6 && memcmp(&s6->sin6_addr, &a, sizeof(a)) == 0)
			return true;
	}
	return false;
}

static zk_dns_stats_t stats(zk_dns_t *r)
{
	zk_dns_stats_t st;
	cr_assert_eq(zk_dns_stats(r, &st), 0);
	return st;
}

/* Datagrams waiting on a UDP socket (read and dropped). */
static int drain_count(int fd)
{
	char buf[1500];
	int n = 0;
	while (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) >= 0)
		n++;
	return n;
}

/* Answers the next query waiting on fd like a DNS server would: an A
 * query gets ip with ttl, any other type an empty (no-data) answer. */
static bool answer_one(int fd, const char *ip, uint32_t ttl)
{
	unsigned char q[512], a[600];
	struct sockaddr_storage from;
	socklen_t fl = sizeof(from);
	ssize_t n = recvfrom(fd, q, sizeof(q), MSG_DONTWAIT, (struct sockaddr *)&from, &fl);
	if (n < 12)
		return false;
	size_t off = 12;
	while (off < (size_t)n && q[off])
		off += q[off] + 1u;
	off += 1 + 4;
	if (off > (size_t)n)
		return false;
	memcpy(a, q, off);
	a[2] = (unsigned char)(0x80 | (q[2] & 0x01)); /* response, RD copied */
	a[3] = 0x80;                                  /* RA, NOERROR */
	a[4] = 0, a[5] = 1;                           /* one question */
	a[8] = a[9] = a[10] = a[11] = 0;
	bool is_a = q[off - 4] == 0 && q[off - 3] == 1;
	a[6] = 0, a[7] = is_a ? 1 : 0;
	if (is_a) {
		unsigned char rr[16] = {0xc0, 0x0c, 0, 1, 0, 1, (unsigned char)(ttl >> 24),
					(unsigned char)(ttl >> 16), (unsigned char)(ttl >> 8),
					(unsigned char)ttl, 0, 4};
		inet_pton(AF_INET, ip, rr + 12);
		memcpy(a + off, rr, sizeof(rr));
		off += sizeof(rr);
	}
	return sendto(fd, a, off, 0, (struct sockaddr *)&from, fl) == (ssize_t)off;
}

/* ---- answers ------------------------------------------------------------------------- */

Test(dns, answers_are_those_the_server_holds)
{
	zk_runtime_t *rt = zt_runtime(2);
	zk_dns_t *r = resolver(dm.servers, 1000, 2, 0);

	struct lk l = lookup(rt, r, "a.test", AF_INET);
	cr_assert_eq(l.res, 1, "a.test A: %d", l.res);
	cr_assert(has_v4(&l, "10.0.0.1"));

	l = lookup(rt, r, "dual.test", AF_INET6);
	cr_assert_eq(l.res, 1, "dual.test AAAA: %d", l.res);
	cr_assert(has_v6(&l, "fd00::2"));

	l = lookup(rt, r, "dual.test", AF_UNSPEC);
	cr_assert_eq(l.res, 2, "dual.test both: %d", l.res);
	cr_assert(has_v4(&l, "10.0.0.2") && has_v6(&l, "fd00::2"));

	/* The name exists, but has no IPv6 address. */
	l = lookup(rt, r, "a.test", AF_INET6);
	cr_assert_eq(l.res, -ENODATA);

	/* Names are case-insensitive: the upper-case lookup is the cached
	 * lower-case answer. */
	zk_dns_stats_t before = stats(r);
	l = lookup(rt, r, "A.Test", AF_INET);
	cr_assert_eq(l.res, 1);
	cr_assert(has_v4(&l, "10.0.0.1"));
	cr_assert_eq(stats(r).cache_hits, before.cache_hits + 1);
	cr_assert_eq(queries("query[A] a.test from", 1), 1);

	zk_dns_free(r);
	zk_runtime_free(rt);
}

/* ---- the cache ------------------------------------------------------------------------ */

Test(dns, a_cache_hit_sends_no_query)
{
	zk_runtime_t *rt = zt_runtime(2);
	zk_dns_t *r = resolver(dm.servers, 1000, 2, 0);
	struct lk l = lookup(rt, r, "a.test", AF_INET);
	cr_assert_eq(l.res, 1);
	cr_assert_eq(queries("query[A] a.test from", 1), 1);
	for (int i = 0; i < 5; i++) {
		l = lookup(rt, r, "a.test", AF_INET);
		cr_assert_eq(l.res, 1);
		cr_assert(has_v4(&l, "10.0.0.1"));
	}
	cr_assert_eq(queries("query[A] a.test from", 1), 1, "a hit went to the server");
	zk_dns_stats_t st = stats(r);
	cr_assert_eq(st.lookups, 6);
	cr_assert_eq(st.cache_hits, 5);
	cr_assert_eq(st.resolves, 1);
	zk_dns_free(r);
	zk_runtime_free(rt);
}

Test(dns, without_the_cache_every_lookup_queries)
{
	zk_runtime_t *rt = zt_runtime(1);
	zk_dns_t *r = resolver(dm.servers, 1000, 2, ZK_DNS_NO_CACHE);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(lookup(rt, r, "a.test", AF_INET).res, 1);
	cr_assert_eq(queries("query[A] a.test from", 3), 3);
	cr_assert_eq(stats(r).cache_hits, 0);
	zk_dns_free(r);
	zk_runtime_free(rt);
}

Test(dns, an_expired_ttl_queries_again)
{
	zk_runtime_t *rt = zt_runtime(2);
	zk_dns_t *r = resolver(dm.servers, 1000, 2, 0);
	struct lk l = lookup(rt, r, "short.test", AF_INET); /* TTL 1 s */
	cr_assert_eq(l.res, 1);
	cr_assert(has_v4(&l, "10.0.0.3"));
	l = lookup(rt, r, "short.test", AF_INET); /* within the TTL: a hit */
	cr_assert_eq(l.res, 1);
	cr_assert_eq(queries("query[A] short.test from", 1), 1);
	zt_msleep(1100);
	l = lookup(rt, r, "short.test", AF_INET);
	cr_assert_eq(l.res, 1);
	cr_assert(has_v4(&l, "10.0.0.3"));
	cr_assert_eq(queries("query[A] short.test from", 2), 2, "expired entry not re-queried");
	/* The long-TTL name stays cached meanwhile. */
	cr_assert_eq(lookup(rt, r, "a.test", AF_INET).res, 1);
	zt_msleep(1100);
	cr_assert_eq(lookup(rt, r, "a.test", AF_INET).res, 1);
	cr_assert_eq(queries("query[A] a.test from", 1), 1);
	zk_dns_free(r);
	zk_runtime_free(rt);
}

Test(dns, nxdomain_is_enoent_and_is_cached_for_the_negative_ttl)
{
	zk_runtime_t *rt = zt_runtime(2);
	zk_dns_t *r = resolver(dm.servers, 1000, 2, 0); /* neg_ttl_s = 1 */
	struct lk l = lookup(rt, r, "nx.test", AF_INET);
	cr_assert_eq(l.res, -ENOENT, "nx.test: %d", l.res);
	l = lookup(rt, r, "nx.test", AF_INET);
	cr_assert_eq(l.res, -ENOENT);
	cr_assert_eq(queries("query[A] nx.test from", 1), 1, "negative answer not cached");
	zt_msleep(1100);
	l = lookup(rt, r, "nx.test", AF_INET);
	cr_assert_eq(l.res, -ENOENT);
	cr_assert_eq(queries("query[A] nx.test from", 2), 2);
	zk_dns_free(r);
	zk_runtime_free(rt);
}

Test(dns, cache_clear_forgets_every_answer)
{
	zk_runtime_t *rt = zt_runtime(1);
	zk_dns_t *r = resolver(dm.servers, 1000, 2, 0);
	cr_assert_eq(lookup(rt, r, "a.test", AF_INET).res, 1);
	cr_assert_eq(lookup(rt, r, "nx.test", AF_INET).res, -ENOENT);
	zk_dns_cache_clear(r);
	cr_assert_eq(lookup(rt, r, "a.test", AF_INET).res, 1);
	cr_assert_eq(lookup(rt, r, "nx.test", AF_INET).res, -ENOENT);
	cr_assert_eq(queries("query[A] a.test from", 2), 2);
	cr_assert_eq(queries("query[A] nx.test from", 2), 2);
	zk_dns_free(r);
	zk_runtime_free(rt);
}

Test(dns, the_cache_holds_about_cache_max_names)
{
	zk_runtime_t *rt = zt_runtime(1);
	zk_dns_config_t cfg = {.servers = dm.servers, .timeout_ms = 1000, .cache_max = 16};
	zk_dns_t *r;
	cr_assert_eq(zk_dns_create(&r, &cfg), 0);
	char names[40][32];
	for (int i = 0; i < 40; i++) {
		snprintf(names[i], sizeof(names[i]), "n%d.w.test", i);
		struct lk l = lookup(rt, r, names[i], AF_INET);
		cr_assert_eq(l.res, 1, "%s: %d", names[i], l.res);
		cr_assert(has_v4(&l, "10.0.0.5"));
	}
	zk_dns_stats_t a = stats(r);
	cr_assert_eq(a.resolves, 40);
	for (int i = 0; i < 40; i++)
		cr_assert_eq(lookup(rt, r, names[i], AF_INET).res, 1);
	zk_dns_stats_t b = stats(r);
	uint64_t hits = b.cache_hits - a.cache_hits;
	cr_assert_leq(hits, 16, "%lu hits: more than cache_max names were kept",
		      (unsigned long)hits);
	cr_assert_eq(b.resolves - a.resolves, 40 - hits);
	cr_assert_eq(queries(".w.test from", (int)(80 - hits)), (int)(80 - hits));
	zk_dns_free(r);
	zk_runtime_free(rt);
}

/* ---- /etc/hosts ------------------------------------------------------------------------ */

Test(dns, localhost_comes_from_the_hosts_file_without_a_query)
{
	/* The only server is a socket that never answers: an answer can only
	 * come from /etc/hosts (or c-ares' RFC 6761 localhost rule). */
	int sport;
	int sfd = udp_socket_on_loopback(&sport);
	char servers[64];
	snprintf(servers, sizeof(servers), "127.0.0.1:%d", sport);
	zk_runtime_t *rt = zt_runtime(1);
	zk_dns_t *r = resolver(servers, 2000, 2, 0);
	struct lk l = lookup(rt, r, "localhost", AF_INET);
	cr_assert_eq(l.res, 1, "localhost: %d", l.res);
	cr_assert(has_v4(&l, "127.0.0.1"));
	cr_assert_lt(l.ms, 1000.0);
	l = lookup(rt, r, "localhost", AF_INET);
	cr_assert_eq(l.res, 1);
	cr_assert_eq(stats(r).cache_hits, 1, "hosts answers are cached for hosts_ttl_s");
	cr_assert_eq(drain_count(sfd), 0, "a query went out for localhost");
	zk_dns_free(r);
	zk_runtime_free(rt);
	close(sfd);
}

/* A private hosts file (c-ares reads $CARES_HOSTS instead of /etc/hosts;
 * each test runs in its own process, so the variable stays in this test). */
static void private_hosts(void)
{
	char path[600];
	snprintf(path, sizeof(path), "%s/hosts", dm.dir);
	FILE *f = fopen(path, "w");
	cr_assert(f);
	fprintf(f, "# test hosts file\n10.0.0.9 hostsonly.test alias.test\nfd00::9 hostsonly.test\n"
		   "10.0.0.99 a.test\n");
	fclose(f);
	cr_assert_eq(setenv("CARES_HOSTS", path, 1), 0);
}

Test(dns, the_hosts_file_answers_before_dns)
{
	private_hosts();
	zk_runtime_t *rt = zt_runtime(2);
	zk_dns_t *r = resolver(dm.servers, 1000, 2, 0);
	struct lk l = lookup(rt, r, "hostsonly.test", AF_INET);
	cr_assert_eq(l.res, 1, "hostsonly.test: %d", l.res);
	cr_assert(has_v4(&l, "10.0.0.9"));
	l = lookup(rt, r, "hostsonly.test", AF_UNSPEC);
	cr_assert_eq(l.res, 2, "hostsonly.test both: %d", l.res);
	cr_assert(has_v4(&l, "10.0.0.9") && has_v6(&l, "fd00::9"));
	l = lookup(rt, r, "ALIAS.test", AF_INET);
	cr_assert_eq(l.res, 1);
	cr_assert(has_v4(&l, "10.0.0.9"));
	/* The hosts file wins over DNS for a name both know. */
	l = lookup(rt, r, "a.test", AF_INET);
	cr_assert_eq(l.res, 1);
	cr_assert(has_v4(&l, "10.0.0.99"));
	/* Hosts answers are cached too (hosts_ttl_s). */
	zk_dns_stats_t before = stats(r);
	cr_assert_eq(lookup(rt, r, "hostsonly.test", AF_INET).res, 1);
	cr_assert_eq(stats(r).cache_hits, before.cache_hits + 1);
	cr_assert_eq(queries("hostsonly.test from", 0), 0, "a hosts name went to DNS");
	cr_assert_eq(queries("query[A] a.test from", 0), 0);
	zk_dns_free(r);

	/* ZK_DNS_NO_HOSTS: DNS only, where hostsonly.test does not exist. */
	r = resolver(dm.servers, 1000, 2, ZK_DNS_NO_HOSTS);
	l = lookup(rt, r, "hostsonly.test", AF_INET);
	cr_assert_eq(l.res, -ENOENT, "res %d", l.res);
	l = lookup(rt, r, "a.test", AF_INET);
	cr_assert(has_v4(&l, "10.0.0.1"));
	cr_assert_eq(queries("query[A] hostsonly.test from", 1), 1);
	/* localhost is never sent to DNS (RFC 6761): with no hosts file it
	 * does not exist. */
	cr_assert_eq(lookup(rt, r, "localhost", AF_INET).res, -ENOENT);
	cr_assert_eq(queries("localhost from", 0), 0);
	zk_dns_free(r);
	zk_runtime_free(rt);
}

/* ---- timeouts and retries --------------------------------------------------------------- */

Test(dns, a_server_that_drops_queries_times_out_after_the_tries)
{
	int sport;
	int sfd = udp_socket_on_loopback(&sport);
	char servers[64];
	snprintf(servers, sizeof(servers), "127.0.0.1:%d", sport);
	zk_runtime_t *rt = zt_runtime(2);
	zk_dns_t *r = resolver(servers, 100, 3, 0);
	struct lk l = lookup(rt, r, "a.test", AF_INET);
	cr_assert_eq(l.res, -ETIMEDOUT, "res %d", l.res);
	/* 100 + 200 + 400 ms: each round doubles the wait. */
	cr_assert_geq(l.ms, 690.0, "gave up after %.0f ms", l.ms);
	cr_assert_lt(l.ms, 700.0 + 1500.0, "gave up after %.0f ms", l.ms);
	cr_assert_eq(drain_count(sfd), 3, "one datagram per try");
	cr_assert_eq(stats(r).timeouts, 1);
	/* A timeout is not cached: the next lookup asks again. */
	l = lookup(rt, r, "a.test", AF_INET);
	cr_assert_eq(l.res, -ETIMEDOUT);
	cr_assert_eq(drain_count(sfd), 3);
	zk_dns_free(r);
	zk_runtime_free(rt);
	close(sfd);
}

Test(dns, a_closed_server_port_is_econnrefused_before_the_timeout)
{
	int sport;
	int sfd = udp_socket_on_loopback(&sport);
	close(sfd); /* nothing listens there now: the kernel answers ICMP refused */
	char servers[64];
	snprintf(servers, sizeof(servers), "127.0.0.1:%d", sport);
	zk_runtime_t *rt = zt_runtime(1);
	zk_dns_t *r = resolver(servers, 2000, 2, 0);
	struct lk l = lookup(rt, r, "a.test", AF_INET);
	cr_assert_eq(l.res, -ECONNREFUSED, "res %d", l.res);
	cr_assert_lt(l.ms, 1500.0, "took %.0f ms: waited for the timeout", l.ms);
	zk_dns_free(r);
	zk_runtime_free(rt);
}

Test(dns, a_dead_server_is_skipped_for_the_live_one)
{
	int sport;
	int sfd = udp_socket_on_loopback(&sport);
	char servers[128];
	snprintf(servers, sizeof(servers), "127.0.0.1:%d,%s", sport, dm.servers);
	zk_runtime_t *rt = zt_runtime(1);
	zk_dns_t *r = resolver(servers, 200, 2, 0);
	struct lk l = lookup(rt, r, "a.test", AF_INET);
	cr_assert_eq(l.res, 1, "res %d", l.res);
	cr_assert(has_v4(&l, "10.0.0.1"));
	cr_assert_eq(drain_count(sfd), 1, "the first server was tried once");
	zk_dns_free(r);
	zk_runtime_free(rt);
	close(sfd);
}

/* ---- coalescing ------------------------------------------------------------------------ */

#define N_SAME 100

struct many {
	zk_dns_t *r;
	const char *name;
	atomic_long ok;
	atomic_long started;
};

static void *one_of_many(void *arg)
{
	struct many *m = arg;
	struct sockaddr_storage a[4];
	atomic_fetch_add(&m->started, 1);
	int rc = zk_dns_lookup(m->r, m->name, AF_INET, a, 4);
	if (rc == 1 && ((struct sockaddr_in *)&a[0])->sin_addr.s_addr == inet_addr("10.0.0.1"))
		atomic_fetch_add(&m->ok, 1);
	else
		ZT_CHECK_EQ(rc, 1);
	return NULL;
}

static void *spawn_many(void *arg)
{
	zk_task_t *t[N_SAME];
	for (int i = 0; i < N_SAME; i++)
		ZT_CHECK_EQ(zk_spawn(&t[i], one_of_many, arg), 0);
	for (int i = 0; i < N_SAME; i++)
		zk_join(t[i], NULL);
	return NULL;
}

Test(dns, concurrent_lookups_of_one_name_send_one_query)
{
	zk_runtime_t *rt = zt_runtime(2);
	zk_dns_t *r = resolver(dm.servers, 1000, 2, 0);
	struct many m = {.r = r, .name = "a.test"};
	zt_run(rt, spawn_many, &m);
	cr_assert_eq(atomic_load(&m.ok), N_SAME);
	cr_assert_eq(queries("query[A] a.test from", 1), 1);
	zk_dns_stats_t st = stats(r);
	cr_assert_eq(st.resolves, 1);
	cr_assert_eq(st.coalesced + st.cache_hits, N_SAME - 1);
	zk_dns_free(r);
	zk_runtime_free(rt);
}

/* The same with a server the test answers by hand, only once every lookup
 * waits, and no cache: so each of the 100 lookups was really in flight at
 * once and still one query went out. */
struct held {
	zk_dns_t *r;
	int sfd;
	struct many m;
	int datagrams;
};

static void *held_answer(void *arg)
{
	struct held *h = arg;
	zk_task_t *t[N_SAME];
	for (int i = 0; i < N_SAME; i++)
		ZT_CHECK_EQ(zk_spawn(&t[i], one_of_many, &h->m), 0);
	/* Wait until the query arrived and 99 lookups joined it. */
	zk_dns_stats_t st = {0};
	for (int i = 0; i < 5000; i++) {
		zk_dns_stats(h->r, &st);
		if (st.coalesced == N_SAME - 1)
			break;
		zk_sleep_ms(1);
	}
	ZT_CHECK_EQ(st.coalesced, N_SAME - 1);
	ZT_CHECK(zk_poll(h->sfd, POLLIN) > 0);
	ZT_CHECK(answer_one(h->sfd, "10.0.0.1", 60));
	for (int i = 0; i < N_SAME; i++)
		zk_join(t[i], NULL);
	h->datagrams = drain_count(h->sfd);
	return NULL;
}

Test(dns, lookups_waiting_together_share_one_query)
{
	struct held h = {0};
	int sport;
	h.sfd = udp_socket_on_loopback(&sport);
	char servers[64];
	snprintf(servers, sizeof(servers), "127.0.0.1:%d", sport);
	zk_runtime_t *rt = zt_runtime(2);
	h.r = resolver(servers, 5000, 1, ZK_DNS_NO_CACHE);
	h.m.r = h.r;
	h.m.name = "held.test";
	zt_run(rt, held_answer, &h);
	cr_assert_eq(atomic_load(&h.m.ok), N_SAME);
	cr_assert_eq(h.datagrams, 0, "more than one query went out");
	zk_dns_stats_t st = stats(h.r);
	cr_assert_eq(st.resolves, 1);
	zk_dns_free(h.r);
	zk_runtime_free(rt);
	close(h.sfd);
}

/* ---- cancellation --------------------------------------------------------------------- */

struct cancel_case {
	zk_dns_t *r;
	int sfd;
	struct lk a, b;
	double cancel_ms;
};

static void *cancel_one_of_two(void *arg)
{
	struct cancel_case *c = arg;
	zk_task_t *ta, *tb;
	ZT_CHECK_EQ(zk_spawn(&ta, lookup_task, &c->a), 0);
	ZT_CHECK_EQ(zk_spawn(&tb, lookup_task, &c->b), 0);
	ZT_CHECK(zk_poll(c->sfd, POLLIN) > 0); /* the query is out */
	zk_dns_stats_t st = {0};
	for (int i = 0; i < 5000 && st.coalesced < 1; i++) {
		zk_dns_stats(c->r, &st);
		zk_sleep_ms(1);
	}
	ZT_CHECK_EQ(st.coalesced, 1);
	uint64_t t0 = zk_now_ns();
	zk_cancel(ta);
	zk_join(ta, NULL);
	c->cancel_ms = zt_ms_since(t0);
	/* The other waiter still gets the answer. */
	ZT_CHECK(answer_one(c->sfd, "10.0.0.7", 60));
	zk_join(tb, NULL);
	return NULL;
}

Test(dns, cancel_wakes_a_task_waiting_on_a_lookup)
{
	struct cancel_case c = {0};
	int sport;
	c.sfd = udp_socket_on_loopback(&sport);
	char servers[64];
	snprintf(servers, sizeof(servers), "127.0.0.1:%d", sport);
	zk_runtime_t *rt = zt_runtime(2);
	c.r = resolver(servers, 5000, 1, 0);
	c.a = (struct lk){.r = c.r, .name = "slow.test", .family = AF_INET};
	c.b = c.a;
	zt_run(rt, cancel_one_of_two, &c);
	cr_assert_eq(c.a.res, -ECANCELED);
	cr_assert_lt(c.cancel_ms, 1000.0);
	cr_assert_eq(c.b.res, 1, "the other waiter: %d", c.b.res);
	cr_assert(has_v4(&c.b, "10.0.0.7"));
	zk_dns_free(c.r);
	zk_runtime_free(rt);
	close(c.sfd);
}

struct flagged {
	struct lk l;
	atomic_long done;
};

static void *lookup_then_flag(void *arg)
{
	struct flagged *f = arg;
	lookup_task(&f->l);
	atomic_store(&f->done, 1);
	return NULL;
}

Test(dns, free_with_an_abandoned_lookup_in_flight_and_runtime_shutdown)
{
	int sport;
	int sfd = udp_socket_on_loopback(&sport);
	char servers[64];
	snprintf(servers, sizeof(servers), "127.0.0.1:%d", sport);
	zk_runtime_t *rt = zt_runtime(2);
	zk_dns_t *r = resolver(servers, 5000, 1, 0);
	/* A lookup that never gets an answer, cancelled by the runtime's
	 * shutdown: its driver must end it and exit. */
	struct flagged f = {.l = {.r = r, .name = "never.test", .family = AF_INET}};
	zk_task_t *t;
	cr_assert_eq(zk_spawn_on(rt, &t, lookup_then_flag, &f), 0);
	struct pollfd pfd = {.fd = sfd, .events = POLLIN};
	cr_assert_eq(poll(&pfd, 1, 5000), 1, "no query arrived");
	zk_detach(t);
	zk_runtime_free(rt);
	cr_assert_eq(f.l.res, -ECANCELED, "res %d", f.l.res);
	zk_dns_free(r);
	drain_count(sfd);

	/* Free while the driver still waits for a lookup its task gave up:
	 * the driver frees the resolver on its way out. */
	rt = zt_runtime(1);
	r = resolver(servers, 5000, 1, 0);
	struct flagged f2 = {.l = {.r = r, .name = "never2.test", .family = AF_INET}};
	cr_assert_eq(zk_spawn_on(rt, &t, lookup_then_flag, &f2), 0);
	cr_assert_eq(poll(&pfd, 1, 5000), 1, "no query arrived");
	zk_cancel(t);
	cr_assert(zt_wait_at_least(&f2.done, 1, 5000));
	cr_assert_eq(f2.l.res, -ECANCELED, "res %d", f2.l.res);
	cr_assert_lt(f2.l.ms, 4000.0);
	zk_dns_free(r);
	zk_detach(t);
	zk_runtime_free(rt);
	close(sfd);
}

/* ---- connect by name ---------------------------------------------------------------- */

struct conn_case {
	zk_dns_t *r;
	int lfd;
	int port;
	const char *host;
	uint64_t attempt_ns; /* per-attempt timeout; 0: 1 s */
	int res;
	int accepted;
	double ms;           /* how long zk_tcp_connect_host took */
};

static void *accept_one(void *arg)
{
	struct conn_case *c = arg;
	c->accepted = zk_accept(c->lfd, NULL, NULL);
	return NULL;
}

static void *connect_by_name(void *arg)
{
	struct conn_case *c = arg;
	zk_task_t *acc;
	ZT_CHECK_EQ(zk_spawn(&acc, accept_one, c), 0);
	uint64_t t0 = zk_now_ns();
	c->res = zk_tcp_connect_host(c->r, c->host, (uint16_t)c->port,
				     c->attempt_ns ? c->attempt_ns : ZK_NSEC_PER_SEC);
	c->ms = zt_ms_since(t0);
	if (c->res < 0)
		zk_cancel(acc);
	zk_join(acc, NULL);
	if (c->res >= 0) {
		ZT_CHECK(zk_send(c->res, "x", 1, 0) == 1);
		char b;
		ZT_CHECK(zk_recv(c->accepted, &b, 1, 0) == 1 && b == 'x');
		zk_close(c->res);
	}
	if (c->accepted >= 0)
		zk_close(c->accepted);
	return NULL;
}

Test(dns, connect_host_resolves_and_connects)
{
	zk_runtime_t *rt = zt_runtime(2);
	zk_dns_t *r = resolver(dm.servers, 1000, 2, 0);
	struct conn_case c = {.r = r, .host = "loop.test"};
	c.lfd = zk_tcp_listen("127.0.0.1", 0, 16);
	cr_assert_geq(c.lfd, 0);
	c.port = zk_socket_port(c.lfd);
	zt_run(rt, connect_by_name, &c);
	cr_assert_geq(c.res, 0, "connect loop.test: %d", c.res);
	cr_assert_geq(c.accepted, 0);

	/* both.test is ::1 and 127.0.0.1; only the IPv4 listener exists, so
	 * whichever order the addresses come in, the IPv4 one connects. */
	c.host = "both.test";
	zt_run(rt, connect_by_name, &c);
	cr_assert_geq(c.res, 0, "connect both.test: %d", c.res);
	cr_assert_geq(c.accepted, 0);
	close(c.lfd);
	zk_dns_free(r);
	zk_runtime_free(rt);
}

/* A TCP listener on [::1]:port, or -1. */
static int listen6(int port, int backlog)
{
	int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int one = 1;
	setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	struct sockaddr_in6 sa = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port),
				  .sin6_addr = IN6ADDR_LOOPBACK_INIT};
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(fd, backlog) != 0) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

static bool connect6_hangs(int port, int *fds, int *nfds)
{
	struct sockaddr_in6 sa = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port),
				  .sin6_addr = IN6ADDR_LOOPBACK_INIT};
	for (*nfds = 0; *nfds < 8;) {
		int fd = socket(AF_INET6, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		fds[(*nfds)++] = fd;
		connect(fd, (struct sockaddr *)&sa, sizeof(sa));
		struct pollfd p = {.fd = fd, .events = POLLOUT};
		if (poll(&p, 1, 200) == 0)
			return true; /* the accept queue is full: connects hang */
	}
	return false;
}

Test(dns, connect_host_staggers_to_the_next_address_when_one_hangs)
{
	zk_runtime_t *rt = zt_runtime(2);
	zk_dns_t *r = resolver(dm.servers, 1000, 2, 0);
	struct lk l = lookup(rt, r, "both.test", AF_UNSPEC);
	cr_assert_eq(l.res, 2);
	if (l.addrs[0].ss_family != AF_INET6) {
		zk_dns_free(r);
		zk_runtime_free(rt);
		cr_skip_test("c-ares put 127.0.0.1 before ::1 here");
	}
	struct conn_case c = {.r = r, .host = "both.test"};
	c.lfd = zk_tcp_listen("127.0.0.1", 0, 16);
	c.port = zk_socket_port(c.lfd);
	int l6 = listen6(c.port, 0);
	int fill[8], nfill = 0;
	if (l6 < 0 || !connect6_hangs(c.port, fill, &nfill)) {
		for (int i = 0; i < nfill; i++)
			close(fill[i]);
		if (l6 >= 0)
			close(l6);
		close(c.lfd);
		zk_dns_free(r);
		zk_runtime_free(rt);
		cr_skip_test("this kernel completes connects to a full accept queue");
	}
	/* ::1 comes first and hangs: 250 ms later 127.0.0.1 is tried and
	 * wins, long before the 3 s attempt timeout. */
	c.attempt_ns = 3 * ZK_NSEC_PER_SEC;
	zt_run(rt, connect_by_name, &c);
	cr_assert_geq(c.res, 0, "res %d", c.res);
	cr_assert_geq(c.ms, 249.0, "%.0f ms: no stagger", c.ms);
	cr_assert_lt(c.ms, 2500.0, "%.0f ms: waited for the hanging attempt", c.ms);
	for (int i = 0; i < nfill; i++)
		close(fill[i]);
	close(l6);
	close(c.lfd);
	zk_dns_free(r);
	zk_runtime_free(rt);
}

Test(dns, connect_host_moves_on_at_once_when_an_address_refuses)
{
	zk_runtime_t *rt = zt_runtime(2);
	zk_dns_t *r = resolver(dm.servers, 1000, 2, 0);
	/* both.test is ::1 then 127.0.0.1 (RFC 6724 puts ::1 first); only
	 * the IPv4 address listens. */
	struct lk l = lookup(rt, r, "both.test", AF_UNSPEC);
	cr_assert_eq(l.res, 2);
	cr_assert_eq(l.addrs[0].ss_family, AF_INET6, "c-ares order changed: ::1 not first");
	struct conn_case c = {.r = r, .host = "both.test"};
	c.lfd = zk_tcp_listen("127.0.0.1", 0, 16);
	c.port = zk_socket_port(c.lfd);
	zt_run(rt, connect_by_name, &c);
	cr_assert_geq(c.res, 0, "res %d", c.res);
	/* Waiting out the stagger would take 250 ms at least. */
	cr_assert_lt(c.ms, 245.0, "%.0f ms: waited the stagger delay after a refusal", c.ms);
	close(c.lfd);
	zk_dns_free(r);
	zk_runtime_free(rt);
}

static void *connect_only(void *arg)
{
	struct conn_case *c = arg;
	c->res = zk_tcp_connect_host(c->r, c->host, (uint16_t)c->port, ZK_NSEC_PER_SEC);
	if (c->res >= 0)
		zk_close(c->res);
	return NULL;
}

Test(dns, connect_host_reports_lookup_and_connect_errors)
{
	zk_runtime_t *rt = zt_runtime(1);
	zk_dns_t *r = resolver(dm.servers, 1000, 2, 0);
	/* A port nobody listens on: the port of a listener just closed. */
	int lfd = zk_tcp_listen("127.0.0.1", 0, 1);
	int port = zk_socket_port(lfd);
	close(lfd);
	struct conn_case c = {.r = r, .host = "loop.test", .port = port};
	zt_run(rt, connect_only, &c);
	cr_assert_eq(c.res, -ECONNREFUSED, "res %d", c.res);
	c.host = "nx.test";
	zt_run(rt, connect_only, &c);
	cr_assert_eq(c.res, -ENOENT, "res %d", c.res);
	zk_dns_free(r);
	zk_runtime_free(rt);
}

/* ---- bad input ------------------------------------------------------------------------ */

struct bad {
	zk_dns_t *r;
};

static void *bad_inputs(void *arg)
{
	zk_dns_t *r = ((struct bad *)arg)->r;
	struct sockaddr_storage a[2];
	ZT_CHECK_EQ(zk_dns_lookup(NULL, "a.test", AF_INET, a, 2), -EINVAL);
	ZT_CHECK_EQ(zk_dns_lookup(r, NULL, AF_INET, a, 2), -EINVAL);
	ZT_CHECK_EQ(zk_dns_lookup(r, "a.test", AF_INET, NULL, 2), -EINVAL);
	ZT_CHECK_EQ(zk_dns_lookup(r, "a.test", AF_INET, a, 0), -EINVAL);
	ZT_CHECK_EQ(zk_dns_lookup(r, "a.test", AF_UNIX, a, 2), -EAFNOSUPPORT);
	char label64[80], long_name[300];
	memset(label64, 'x', 64);
	strcpy(label64 + 64, ".test");
	for (int i = 0; i < 254; i += 2)
		long_name[i] = 'y', long_name[i + 1] = '.';
	long_name[253] = 'y';
	long_name[254] = '\0'; /* 254 bytes, no trailing dot */
	const char *bad_names[] = {"", ".", "a..test", ".a.test", "a test", "a/test", "a\\.test",
				   "é.test", label64, long_name};
	for (size_t i = 0; i < sizeof(bad_names) / sizeof(bad_names[0]); i++) {
		int rc = zk_dns_lookup(r, bad_names[i], AF_INET, a, 2);
		if (rc != -EINVAL)
			zt_fail(__FILE__, __LINE__, "name %zu (\"%.20s\"): %d", i, bad_names[i], rc);
	}
	/* Numeric addresses need no lookup. */
	ZT_CHECK_EQ(zk_dns_lookup(r, "10.1.2.3", AF_INET, a, 2), 1);
	ZT_CHECK(((struct sockaddr_in *)&a[0])->sin_addr.s_addr == inet_addr("10.1.2.3"));
	ZT_CHECK_EQ(zk_dns_lookup(r, "10.1.2.3", AF_UNSPEC, a, 2), 1);
	ZT_CHECK_EQ(zk_dns_lookup(r, "10.1.2.3", AF_INET6, a, 2), -ENODATA);
	ZT_CHECK_EQ(zk_dns_lookup(r, "::1", AF_UNSPEC, a, 2), 1);
	ZT_CHECK_EQ(a[0].ss_family, AF_INET6);
	ZT_CHECK_EQ(zk_dns_lookup(r, "::1", AF_INET, a, 2), -ENODATA);
	/* A trailing dot is an absolute name, resolved alike. */
	ZT_CHECK_EQ(zk_dns_lookup(r, "a.test.", AF_INET, a, 2), 1);
	/* One slot for two addresses: one stored. */
	ZT_CHECK_EQ(zk_dns_lookup(r, "dual.test", AF_UNSPEC, a, 1), 1);
	zk_dns_stats_t st;
	zk_dns_stats(r, &st);
	ZT_CHECK_EQ(st.lookups, 2); /* the two valid names only */
	return NULL;
}

Test(dns, bad_input_is_rejected_before_any_query)
{
	zk_runtime_t *rt = zt_runtime(1);
	zk_dns_t *r = resolver(dm.servers, 1000, 2, 0);
	struct bad b = {r};
	zt_run(rt, bad_inputs, &b);
	cr_assert_eq(zk_dns_stats(r, NULL), -EINVAL);
	zk_dns_stats_t st;
	cr_assert_eq(zk_dns_stats(NULL, &st), -EINVAL);
	/* Outside a task. */
	struct sockaddr_storage a[1];
	cr_assert_eq(zk_dns_lookup(r, "a.test", AF_INET, a, 1), -EPERM);
	cr_assert_eq(zk_tcp_connect_host(r, "a.test", 80, 0), -EPERM);
	zk_dns_free(r);
	zk_dns_free(NULL);
	zk_dns_cache_clear(NULL);
	zk_runtime_free(rt);

	cr_assert_eq(zk_dns_create(NULL, NULL), -EINVAL);
	zk_dns_config_t cfg = {.servers = "not an address"};
	cr_assert_eq(zk_dns_create(&r, &cfg), -EINVAL);
	cfg = (zk_dns_config_t){.tries = 17};
	cr_assert_eq(zk_dns_create(&r, &cfg), -EINVAL);
	/* The defaults (resolv.conf) work. */
	cr_assert_eq(zk_dns_create(&r, NULL), 0);
	zk_dns_free(r);
}
