/* zokio/dns.h — asynchronous name resolution (A/AAAA) with a TTL cache.
 *
 * A resolver (zk_dns_t) owns one c-ares channel whose sockets are driven by
 * the runtime's event loop: a lookup that misses the cache sends its queries
 * and suspends the calling task; a driver task of the resolver waits on the
 * channel's sockets (zk_poll on an epoll set) and on c-ares' next retry
 * deadline, and wakes the waiting tasks when the answer, an error or the
 * last timeout arrives. No worker ever blocks in select() or a socket call.
 *
 * Lookups consult /etc/hosts first (or the file named by $CARES_HOSTS;
 * skipped with ZK_DNS_NO_HOSTS), then DNS, with resolv.conf's search
 * domains and ndots rules as c-ares applies them. "localhost" is never sent
 * to DNS (RFC 6761).
 * Answers are cached until the smallest TTL of the answer records passes
 * (capped by max_ttl_s); "no such name" and "no address of that family" are
 * cached for neg_ttl_s (a negative cache). Concurrent lookups of the same
 * (name, family) are coalesced: one set of queries goes out, every caller
 * gets its answer.
 *
 * Retries: each query is sent up to `tries` times per server; the first try
 * waits timeout_ms, and each round over all servers doubles the wait
 * (c-ares' exponential backoff), so a server that never answers yields
 * -ETIMEDOUT after timeout_ms * (2^tries - 1) with one server.
 *
 * Errors shared by every suspending call here: -EPERM outside a runtime
 * task, -ECANCELED when the calling task is cancelled while it waits (the
 * queries go on and still fill the cache for later lookups). */
#ifndef ZOKIO_DNS_H
#define ZOKIO_DNS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct zk_dns zk_dns_t;

/* zk_dns_config_t.flags */
#define ZK_DNS_NO_CACHE 1u  /* no positive or negative cache (coalescing stays) */
#define ZK_DNS_NO_HOSTS 2u  /* do not consult /etc/hosts */

/* Resolver configuration. Zero-initialise and set what you need; a field
 * left at 0 takes the default in its comment. */
typedef struct zk_dns_config {
	/* Servers as "host[:port],..." ("127.0.0.1:5353,[::1]:53").
	 * Default (NULL): the nameservers of /etc/resolv.conf. */
	const char *servers;
	/* Wait for the first try of a query, in ms; doubled each round over
	 * the servers. Default 2000. */
	unsigned timeout_ms;
	/* Tries per server. Default 3. */
	unsigned tries;
	/* Cap on how long an answer is cached, in s, whatever its TTL.
	 * Default 3600. */
	unsigned max_ttl_s;
	/* How long NXDOMAIN / no-data answers are cached, in s. Default 5. */
	unsigned neg_ttl_s;
	/* How long /etc/hosts answers (which carry no TTL) are cached, in s.
	 * Default 5. */
	unsigned hosts_ttl_s;
	/* Most cached (name, family) answers, about: the cache is 16 shards
	 * of cache_max / 16 (rounded up) each, and a full shard drops its
	 * oldest entry. Default 4096. */
	unsigned cache_max;
	/* ZK_DNS_* flags. */
	unsigned flags;
} zk_dns_config_t;

/* Creates a resolver; cfg may be NULL for the defaults. Not suspending, any
 * thread; reads /etc/resolv.conf (and the c-ares configuration files) once.
 * Returns 0 and stores it in *out, or
 *   -EINVAL   out NULL, or cfg->servers unparsable,
 *   -ENOMEM,  -EMFILE/-ENFILE (its epoll or eventfd could not be created),
 *   -EIO      c-ares could not initialise (unreadable configuration). */
int zk_dns_create(zk_dns_t **out, const zk_dns_config_t *cfg);

/* Frees the resolver. No lookup may be in progress or start later (a
 * lookup whose task was cancelled does not count: queries still in flight
 * are abandoned). Any thread, task or not, never waits: if the driver task
 * is still running it is told to stop and frees the rest itself. r may be
 * NULL. */
void zk_dns_free(zk_dns_t *r);

/* Resolves name for family AF_INET (A), AF_INET6 (AAAA) or AF_UNSPEC (both,
 * in c-ares' RFC 6724 order) and stores up to max addresses in out[] as
 * sockaddr_in / sockaddr_in6 with port 0. A numeric address ("10.0.0.1",
 * "::1") is returned as is without any lookup. Suspends on a cache miss.
 * Returns the number of addresses stored (1..max; more may exist), or
 *   -ENOENT       the name does not exist (NXDOMAIN; also "localhost"
 *                 with ZK_DNS_NO_HOSTS),
 *   -ENODATA      the name exists but has no address of that family,
 *   -ETIMEDOUT    no server answered within the tries (see above),
 *   -ECONNREFUSED every server refused: it answered SERVFAIL, REFUSED
 *                 or NOTIMP, or could not be reached (ICMP port
 *                 unreachable); c-ares reports these alike,
 *   -EIO          the answer was malformed or unusable (FORMERR, a
 *                 truncated or bad response),
 *   -EINVAL       r, name or out NULL, max 0, an empty name, a name over
 *                 253 bytes, an empty or over-63-byte label, or a byte other
 *                 than a letter, digit, '-', '_' or '.',
 *   -EAFNOSUPPORT family is not AF_INET, AF_INET6 or AF_UNSPEC,
 *   -ENOMEM, -ECANCELED (the caller was cancelled, or the resolver's
 *                 driver was: runtime shutdown), -EPERM (outside a task). */
int zk_dns_lookup(zk_dns_t *r, const char *name, int family, struct sockaddr_storage *out,
		  size_t max);

/* Drops every cached answer (positive and negative). Any thread. */
void zk_dns_cache_clear(zk_dns_t *r);

/* Counters since creation (a snapshot). */
typedef struct zk_dns_stats {
	uint64_t lookups;     /* name lookups (valid, not numeric addresses) */
	uint64_t cache_hits;  /* answered from the cache (negative hits included) */
	uint64_t coalesced;   /* joined a lookup already in flight */
	uint64_t resolves;    /* c-ares lookups started (hosts file and DNS) */
	uint64_t timeouts;    /* resolves that ended in -ETIMEDOUT */
} zk_dns_stats_t;

/* Fills *st. Any thread. Returns 0 or -EINVAL (r or st NULL). */
int zk_dns_stats(zk_dns_t *r, zk_dns_stats_t *st);

/* Resolves host with r (AF_UNSPEC) and connects a TCP socket to port, Happy
 * Eyeballs style (RFC 8305): the first 16 addresses are tried in c-ares'
 * order with the families interleaved; an attempt that has not connected
 * within 250 ms gets the next address started alongside it, and one that
 * fails starts the next at once. The first to connect wins; the others are cancelled and
 * closed. Each attempt gives up after attempt_timeout_ns (0: no limit beyond
 * the kernel's). TCP_NODELAY is set. Suspends. Returns the connected fd
 * (close-on-exec), or
 *   the errors of zk_dns_lookup,
 *   the error of the last failed attempt (-ECONNREFUSED, -ETIMEDOUT,
 *   -ENETUNREACH, ...) when every address failed,
 *   -ECANCELED (the caller was cancelled: every attempt is cancelled and
 *   closed before the call returns), -ENOMEM. */
int zk_tcp_connect_host(zk_dns_t *r, const char *host, uint16_t port,
			uint64_t attempt_timeout_ns);

#ifdef __cplusplus
}
#endif
#endif
