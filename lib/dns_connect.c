/* lib/dns_connect.c — zk_tcp_connect_host: resolve a name with a zk_dns_t
 * and connect to it Happy Eyeballs style (RFC 8305). Each attempt is a task
 * in a scope; attempts report to a channel; the scope's end cancels and
 * reaps the losers, so no attempt outlives the call and every losing fd is
 * closed here. Only public calls: this file could live outside the
 * library. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>

#include <arpa/inet.h>

#include "zokio/dns.h"
#include "zokio/fs.h"
#include "zokio/net.h"
#include "zokio/select.h"
#include "zokio/sync.h"
#include "zokio/time.h"

/* RFC 8305's "Connection Attempt Delay": how long an attempt runs alone
 * before the next address is tried alongside it. */
#define CONNECT_STAGGER_NS (250 * ZK_NSEC_PER_MSEC)
#define CONNECT_MAX_ADDRS 16

struct attempt {
	struct sockaddr_storage sa;
	socklen_t len;
	int fd;                 /* -1 until the socket exists */
	int res;                /* connect's result */
	zk_chan_t *done;        /* where the attempt reports itself */
	uint64_t timeout_ns;
};

static void *attempt_task(void *arg)
{
	struct attempt *a = arg;
	a->fd = socket(a->sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (a->fd < 0) {
		a->res = -errno;
	} else {
		int one = 1;
		setsockopt(a->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (a->timeout_ns)
			zk_timeout_next(a->timeout_ns);
		a->res = zk_connect(a->fd, (struct sockaddr *)&a->sa, a->len);
	}
	/* Room for every attempt: never waits. If it fails the coordinator
	 * still reads a->res after the scope ends. */
	zk_chan_try_send(a->done, a);
	return NULL;
}

/* RFC 8305 section 4: alternate the families, starting with the first. */
static void interleave(struct sockaddr_storage *addrs, int n)
{
	struct sockaddr_storage tmp[CONNECT_MAX_ADDRS];
	int first = addrs[0].ss_family, k = 0;
	int i_same = 0, i_other = 0;
	bool take_same = true;
	while (k < n) {
		int *idx = take_same ? &i_same : &i_other;
		while (*idx < n && (addrs[*idx].ss_family == first) != take_same)
			(*idx)++;
		if (*idx < n)
			tmp[k++] = addrs[(*idx)++];
		take_same = !take_same;
	}
	memcpy(addrs, tmp, (size_t)n * sizeof(addrs[0]));
}

int zk_tcp_connect_host(zk_dns_t *r, const char *host, uint16_t port,
			uint64_t attempt_timeout_ns)
{
	struct sockaddr_storage addrs[CONNECT_MAX_ADDRS];
	int n = zk_dns_lookup(r, host, AF_UNSPEC, addrs, CONNECT_MAX_ADDRS);
	if (n < 0)
		return n;
	interleave(addrs, n);
	struct attempt at[CONNECT_MAX_ADDRS];
	zk_chan_t *done;
	int rc = zk_chan_create(&done, CONNECT_MAX_ADDRS);
	if (rc < 0)
		return rc;
	zk_scope_t scope;
	if ((rc = zk_scope_begin(&scope, NULL)) < 0) {
		zk_chan_free(done);
		return rc;
	}
	int started = 0, running = 0, last = -EHOSTUNREACH;
	struct attempt *winner = NULL;
	bool start_next = true;
	while (!winner && (running > 0 || started < n)) {
		if (start_next && started < n) {
			/* The first address, or the last attempt failed, or
			 * it has run alone for the stagger delay: start the
			 * next one (the others keep going). */
			struct attempt *a = &at[started++];
			memset(a, 0, sizeof(*a));
			a->sa = addrs[started - 1];
			a->fd = -1;
			a->done = done;
			a->timeout_ns = attempt_timeout_ns;
			if (a->sa.ss_family == AF_INET) {
				((struct sockaddr_in *)&a->sa)->sin_port = htons(port);
				a->len = sizeof(struct sockaddr_in);
			} else {
				((struct sockaddr_in6 *)&a->sa)->sin6_port = htons(port);
				a->len = sizeof(struct sockaddr_in6);
			}
			if ((rc = zk_scope_spawn(&scope, attempt_task, a)) < 0) {
				a->res = last = rc;
				break;
			}
			running++;
		}
		void *msg;
		rc = zk_chan_recv_timeout(done, &msg, started < n ? CONNECT_STAGGER_NS : ZK_FOREVER);
		start_next = true;
		if (rc == -ETIMEDOUT)
			continue;
		if (rc < 0) {
			last = rc; /* -ECANCELED */
			break;
		}
		struct attempt *a = msg;
		running--;
		if (a->res == 0)
			winner = a;
		else
			last = a->res;
	}
	/* Cancels the attempts still connecting and waits for all of them, so
	 * every fd below is final. */
	zk_scope_end(&scope);
	zk_chan_free(done);
	for (int i = 0; i < started; i++)
		if (&at[i] != winner && at[i].fd >= 0)
			zk_close(at[i].fd);
	return winner ? winner->fd : last;
}
