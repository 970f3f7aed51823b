/* lib/dns.c — the asynchronous resolver: a c-ares channel driven by the
 * runtime's event loop, lookups that suspend, coalescing, the TTL cache.
 *
 * c-ares is not thread-safe per channel, and tasks move between workers, so
 * every call into the channel is made under the resolver's mutex, and that
 * mutex is never held across a suspension. c-ares runs its callbacks from
 * inside those calls, so callbacks run with the mutex held too.
 *
 * Sockets. c-ares reports the sockets it wants watched through
 * ARES_OPT_SOCK_STATE_CB; we mirror them into a private epoll set (a
 * non-blocking epoll_ctl), so the whole channel becomes one pollable fd.
 * While lookups are pending, one driver task per resolver waits on that fd
 * with zk_poll, bounded by c-ares' next retry deadline (zk_timeout_next),
 * then lets c-ares read the ready sockets (ares_process_fd) and resend what
 * timed out. An eventfd in the same set lets a new lookup wake the driver
 * so that it re-reads the deadline. The driver exits when nothing is
 * pending, so an idle resolver costs no task and no wake-up, and the next
 * miss spawns a new one.
 *
 * Lookups. A hit is served by the cache alone (dns_cache.c: sharded, each
 * shard under its own mutex), without the resolver's lock. A miss takes the
 * lock, checks the cache again (the answer may have just arrived), and
 * registers the calling task as a waiter of the in-flight lookup for its
 * (name, family) — creating it, and calling ares_getaddrinfo, only if there
 * is none — and suspends on a oneshot on its own stack. The c-ares callback
 * turns the answer into a shared record, caches it, hands a reference to
 * every waiter and sends each oneshot, all under the resolver's mutex: a
 * waiter that was cancelled takes the mutex before it leaves, so it either
 * unlinks itself first or finds its answer.
 *
 * Blocking calls that remain, all c-ares' own and all small: ares_init reads
 * resolv.conf at zk_dns_create, and a lookup that misses the cache reads
 * the hosts file (a page-cache read of a few hundred bytes) inside
 * ares_getaddrinfo before it sends any query. Hosts answers are cached
 * (hosts_ttl_s) so a hot name does not re-read it. */
#include <ares.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <arpa/inet.h>

#include "dns_cache.h"
#include "internal.h"
#include "zokio/dns.h"
#include "zokio/fs.h"
#include "zokio/net.h"
#include "zokio/sync.h"
#include "zokio/task.h"
#include "zokio/time.h"

/* Defaults of zk_dns_config_t (see dns.h). */
#define DEF_TIMEOUT_MS 2000u
#define DEF_TRIES 3u
#define DEF_MAX_TTL_S 3600u
#define DEF_NEG_TTL_S 5u
#define DEF_HOSTS_TTL_S 5u
#define DEF_CACHE_MAX 4096u
/* More tries than this is a configuration mistake, and c-ares' backoff
 * (timeout << round) would overflow its int long before. */
#define MAX_TRIES 16u

/* In-flight lookups are few (one per distinct name being resolved). */
#define FLIGHT_BUCKETS 64u
/* Ready sockets taken per epoll_wait; more are taken on the next round. */
#define DRIVER_EVENTS 16

struct flight;

/* A task waiting for a lookup; lives on that task's stack. */
struct waiter {
	struct waiter *next, *prev;
	struct flight *f;          /* the lookup waited on; NULL once answered */
	struct zk__dns_rec *rec;   /* the answer (one reference), or NULL if
	                            * the record could not be allocated */
	zk_oneshot_t done;
};

/* One ares_getaddrinfo in progress and the tasks waiting for it. */
struct flight {
	struct flight *hnext;
	zk_dns_t *r;
	struct waiter *waiters;
	uint64_t hash;
	int family;
	uint16_t len;
	char key[];
};

struct zk_dns {
	pthread_mutex_t lock;       /* guards everything below */
	ares_channel ch;
	int epfd;                   /* c-ares' sockets + evfd */
	int evfd;                   /* pokes the driver */
	unsigned flags;             /* ZK_DNS_* */
	uint64_t max_ttl_ns, neg_ttl_ns, hosts_ttl_ns;
	struct flight *flights[FLIGHT_BUCKETS];
	struct flight *submitting;  /* the flight inside ares_getaddrinfo now:
	                             * an answer for it arriving synchronously
	                             * came from /etc/hosts, not from DNS */
	size_t pending;             /* ares_getaddrinfo calls not called back */
	bool driver_running;        /* a driver task exists (or is spawning) */
	bool freeing;               /* zk_dns_free ran: the driver frees r */
	zk_dns_stats_t st;          /* lookups and cache_hits: in the cache */
	struct zk__dns_cache cache; /* locks itself; last: it is aligned */
};

static pthread_once_t ares_once = PTHREAD_ONCE_INIT;
static int ares_init_res;

static void ares_lib_init(void)
{
	ares_init_res = ares_library_init(ARES_LIB_INIT_ALL);
}

static int map_status(int st)
{
	switch (st) {
	case ARES_SUCCESS:
		return 0;
	case ARES_ENOTFOUND:
	case ARES_ENONAME:
		return -ENOENT;
	case ARES_ENODATA:
		return -ENODATA;
	case ARES_ETIMEOUT:
		return -ETIMEDOUT;
	case ARES_ECONNREFUSED:
		return -ECONNREFUSED;
	case ARES_ENOMEM:
		return -ENOMEM;
	case ARES_ECANCELLED:
	case ARES_EDESTRUCTION:
		return -ECANCELED;
	case ARES_EBADNAME:
	case ARES_EBADQUERY:
	case ARES_EBADFLAGS:
	case ARES_EBADHINTS:
		return -EINVAL;
	case ARES_EBADFAMILY:
		return -EAFNOSUPPORT;
	/* (c-ares ends a query every server answered SERVFAIL, REFUSED or NOTIMP
	 * with ARES_ECONNREFUSED, as if none could be reached: see dns.h.) */
	default: /* FORMERR, bad response, EOF */
		return -EIO;
	}
}

/* ---- the channel's sockets ------------------------------------------------ */

/* Called by c-ares (under the lock) when it opens, closes or changes what
 * it waits for on a socket. A failed epoll_ctl leaves that socket unwatched:
 * its queries then end by c-ares' timeout, never by a hang. */
static void sock_state_cb(void *data, ares_socket_t fd, int readable, int writable)
{
	zk_dns_t *r = data;
	if (!readable && !writable) {
		epoll_ctl(r->epfd, EPOLL_CTL_DEL, fd, NULL);
		return;
	}
	struct epoll_event ev = {.events = (readable ? EPOLLIN : 0u) | (writable ? EPOLLOUT : 0u),
				 .data.fd = fd};
	if (epoll_ctl(r->epfd, EPOLL_CTL_MOD, fd, &ev) != 0 && errno == ENOENT)
		epoll_ctl(r->epfd, EPOLL_CTL_ADD, fd, &ev);
}

static void poke(zk_dns_t *r)
{
	uint64_t one = 1;
	/* EAGAIN means the counter is already non-zero: the driver will wake. */
	ssize_t n = write(r->evfd, &one, sizeof(one));
	(void)n;
}

static void destroy(zk_dns_t *r)
{
	ares_destroy(r->ch); /* closes its sockets through sock_state_cb */
	/* The backend may watch epfd (the driver polled it): a zk_close lets a
	 * readiness backend drop its registration at once. */
	if (zk__task_here())
		zk_close(r->epfd);
	else
		close(r->epfd);
	close(r->evfd);
	zk__dns_cache_fini(&r->cache);
	pthread_mutex_destroy(&r->lock);
	free(r);
}

/* Drives the channel until nothing is pending; runs as the driver task
 * (or, if that task could not be spawned, in the looking-up task). */
static void driver_loop(zk_dns_t *r)
{
	pthread_mutex_lock(&r->lock);
	while (r->pending > 0) {
		struct timeval tvb;
		struct timeval *tv = ares_timeout(r->ch, NULL, &tvb);
		pthread_mutex_unlock(&r->lock);
		int pr = 0;
		uint64_t ns = tv ? (uint64_t)tv->tv_sec * ZK_NSEC_PER_SEC + (uint64_t)tv->tv_usec * 1000u
				 : 0;
		if (!tv || ns > 0) {
			if (tv)
				zk_timeout_next(ns);
			pr = zk_poll(r->epfd, POLLIN);
		}
		struct epoll_event ev[DRIVER_EVENTS];
		int n = 0;
		if (pr >= 0)
			n = epoll_wait(r->epfd, ev, DRIVER_EVENTS, 0);
		pthread_mutex_lock(&r->lock);
		if (pr < 0 && pr != -ETIMEDOUT) {
			/* Cancelled (runtime shutdown), or the poll itself
			 * failed: nobody will drive the channel any more, so
			 * end every lookup now; the callbacks wake the waiters
			 * with -ECANCELED. The next miss spawns a new driver. */
			ares_cancel(r->ch);
			break;
		}
		for (int i = 0; i < n; i++) {
			int fd = ev[i].data.fd;
			if (fd == r->evfd) {
				uint64_t v;
				ssize_t k = read(r->evfd, &v, sizeof(v));
				(void)k;
				continue;
			}
			uint32_t e = ev[i].events;
			ares_process_fd(r->ch, (e & (EPOLLIN | EPOLLERR | EPOLLHUP)) ? fd : ARES_SOCKET_BAD,
					(e & (EPOLLOUT | EPOLLERR)) ? fd : ARES_SOCKET_BAD);
		}
		if (n <= 0)
			ares_process_fd(r->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD); /* retries */
	}
	pthread_mutex_unlock(&r->lock);
}

/* The driver is gone: a later miss starts a new one, and a resolver that
 * zk_dns_free() handed to the driver is freed now. */
static void driver_gone(zk_dns_t *r)
{
	pthread_mutex_lock(&r->lock);
	r->driver_running = false;
	bool do_free = r->freeing && r->pending == 0;
	pthread_mutex_unlock(&r->lock);
	if (do_free)
		destroy(r);
}

/* Runs when the driver task ends, also when it is cancelled before it
 * ever ran (runtime shutdown right after the spawn): driver_main may never
 * run, this always does. */
static void driver_exit(struct zk_task *t)
{
	driver_gone(t->on_exit_ctx);
}

static void *driver_main(void *arg)
{
	driver_loop(arg);
	return NULL;
}

/* ---- in-flight lookups ----------------------------------------------------- */

static struct flight **flight_slot(zk_dns_t *r, uint64_t hash)
{
	return &r->flights[hash & (FLIGHT_BUCKETS - 1)];
}

static struct flight *flight_find(zk_dns_t *r, const char *key, size_t len, int family,
				  uint64_t hash)
{
	for (struct flight *f = *flight_slot(r, hash); f; f = f->hnext)
		if (f->hash == hash && f->family == family && f->len == len &&
		    memcmp(f->key, key, len) == 0)
			return f;
	return NULL;
}

static void flight_unlink(zk_dns_t *r, struct flight *f)
{
	struct flight **pp = flight_slot(r, f->hash);
	while (*pp != f)
		pp = &(*pp)->hnext;
	*pp = f->hnext;
}

static void waiter_add(struct flight *f, struct waiter *w)
{
	w->f = f;
	w->prev = NULL;
	w->next = f->waiters;
	if (f->waiters)
		f->waiters->prev = w;
	f->waiters = w;
}

static void waiter_remove(struct flight *f, struct waiter *w)
{
	if (w->prev)
		w->prev->next = w->next;
	else
		f->waiters = w->next;
	if (w->next)
		w->next->prev = w->prev;
	w->f = NULL;
}

/* The answer as a record, and how long to cache it (0: do not). */
static struct zk__dns_rec *build_rec(zk_dns_t *r, int status, struct ares_addrinfo *res,
				     bool from_hosts, uint64_t *ttl_ns)
{
	uint32_t n = 0;
	int min_ttl = INT_MAX;
	if (status == ARES_SUCCESS && res) {
		for (struct ares_addrinfo_node *nd = res->nodes; nd; nd = nd->ai_next) {
			if ((nd->ai_family != AF_INET && nd->ai_family != AF_INET6) ||
			    nd->ai_addrlen > sizeof(union zk__dns_addr))
				continue;
			n++;
			if (nd->ai_ttl < min_ttl)
				min_ttl = nd->ai_ttl;
		}
	}
	int err = map_status(status);
	if (err == 0 && n == 0)
		err = -ENODATA;
	/* c-ares never sends "localhost" to DNS (RFC 6761); with the hosts
	 * file off it ends that lookup with its initial ECONNREFUSED, though
	 * no server was asked. */
	if (from_hosts && err == -ECONNREFUSED)
		err = -ENOENT;
	struct zk__dns_rec *rec = zk__dns_rec_new(err, err == 0 ? n : 0);
	*ttl_ns = 0;
	if (!rec)
		return NULL;
	if (err == 0) {
		uint32_t i = 0;
		for (struct ares_addrinfo_node *nd = res->nodes; nd; nd = nd->ai_next) {
			if ((nd->ai_family != AF_INET && nd->ai_family != AF_INET6) ||
			    nd->ai_addrlen > sizeof(union zk__dns_addr))
				continue;
			memset(&rec->addrs[i], 0, sizeof(rec->addrs[i]));
			memcpy(&rec->addrs[i], nd->ai_addr, nd->ai_addrlen);
			rec->addrs[i].in.sin_port = 0;
			i++;
		}
		if (from_hosts)
			*ttl_ns = r->hosts_ttl_ns;
		else if (min_ttl > 0)
			*ttl_ns = (uint64_t)min_ttl * ZK_NSEC_PER_SEC;
		if (*ttl_ns > r->max_ttl_ns)
			*ttl_ns = r->max_ttl_ns;
	} else if (err == -ENOENT || err == -ENODATA) {
		*ttl_ns = r->neg_ttl_ns;
	}
	return rec;
}

/* ares_getaddrinfo's callback; runs under the lock. */
static void gai_cb(void *arg, int status, int timeouts, struct ares_addrinfo *res)
{
	(void)timeouts;
	struct flight *f = arg;
	zk_dns_t *r = f->r;
	r->pending--;
	if (status == ARES_ETIMEOUT)
		r->st.timeouts++;
	uint64_t ttl_ns;
	struct zk__dns_rec *rec = build_rec(r, status, res, r->submitting == f, &ttl_ns);
	if (res)
		ares_freeaddrinfo(res);
	flight_unlink(r, f);
	if (rec && ttl_ns > 0 && !(r->flags & ZK_DNS_NO_CACHE) && !r->freeing)
		zk__dns_cache_put(&r->cache, f->key, f->len, f->family, f->hash, rec,
				  zk_now_ns() + ttl_ns); /* -ENOMEM: just not cached */
	struct waiter *w = f->waiters;
	while (w) {
		/* The send may let w's task return and its stack go: read
		 * everything first. */
		struct waiter *next = w->next;
		w->f = NULL;
		w->rec = rec ? zk__dns_rec_get(rec) : NULL;
		zk_oneshot_send(&w->done, NULL);
		w = next;
	}
	zk__dns_rec_put(rec);
	free(f);
}

/* ---- public calls ----------------------------------------------------------- */

int zk_dns_create(zk_dns_t **out, const zk_dns_config_t *cfg)
{
	static const zk_dns_config_t defaults;
	if (!out)
		return -EINVAL;
	if (!cfg)
		cfg = &defaults;
	if (cfg->tries > MAX_TRIES || cfg->timeout_ms > INT_MAX)
		return -EINVAL;
	pthread_once(&ares_once, ares_lib_init);
	if (ares_init_res != ARES_SUCCESS)
		return ares_init_res == ARES_ENOMEM ? -ENOMEM : -EIO;

	/* The cache's shards are cache-line aligned. */
	size_t size = (sizeof(zk_dns_t) + 63) & ~(size_t)63;
	zk_dns_t *r = aligned_alloc(64, size);
	if (!r)
		return -ENOMEM;
	memset(r, 0, size);
	int err = 0;
	r->flags = cfg->flags;
	r->max_ttl_ns = (uint64_t)(cfg->max_ttl_s ? cfg->max_ttl_s : DEF_MAX_TTL_S) * ZK_NSEC_PER_SEC;
	r->neg_ttl_ns = (uint64_t)(cfg->neg_ttl_s ? cfg->neg_ttl_s : DEF_NEG_TTL_S) * ZK_NSEC_PER_SEC;
	r->hosts_ttl_ns =
	    (uint64_t)(cfg->hosts_ttl_s ? cfg->hosts_ttl_s : DEF_HOSTS_TTL_S) * ZK_NSEC_PER_SEC;
	r->epfd = epoll_create1(EPOLL_CLOEXEC);
	r->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (r->epfd < 0 || r->evfd < 0) {
		err = -errno;
		goto fail_fds;
	}
	struct epoll_event ev = {.events = EPOLLIN, .data.fd = r->evfd};
	if (epoll_ctl(r->epfd, EPOLL_CTL_ADD, r->evfd, &ev) != 0) {
		err = -errno;
		goto fail_fds;
	}
	if ((err = zk__dns_cache_init(&r->cache, cfg->cache_max ? cfg->cache_max
								: DEF_CACHE_MAX)) < 0)
		goto fail_fds;
	pthread_mutex_init(&r->lock, NULL);

	static char lookups_fb[] = "fb", lookups_b[] = "b";
	struct ares_options o = {0};
	o.sock_state_cb = sock_state_cb;
	o.sock_state_cb_data = r;
	o.timeout = (int)(cfg->timeout_ms ? cfg->timeout_ms : DEF_TIMEOUT_MS);
	o.tries = (int)(cfg->tries ? cfg->tries : DEF_TRIES);
	o.lookups = (cfg->flags & ZK_DNS_NO_HOSTS) ? lookups_b : lookups_fb;
	int st = ares_init_options(&r->ch, &o,
				   ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES |
				       ARES_OPT_LOOKUPS);
	if (st != ARES_SUCCESS) {
		err = st == ARES_ENOMEM ? -ENOMEM : -EIO;
		goto fail_cache;
	}
	if (cfg->servers) {
		st = ares_set_servers_ports_csv(r->ch, cfg->servers);
		if (st != ARES_SUCCESS) {
			err = st == ARES_ENOMEM ? -ENOMEM : -EINVAL;
			ares_destroy(r->ch);
			goto fail_cache;
		}
	}
	*out = r;
	return 0;

fail_cache:
	pthread_mutex_destroy(&r->lock);
	zk__dns_cache_fini(&r->cache);
fail_fds:
	if (r->epfd >= 0)
		close(r->epfd);
	if (r->evfd >= 0)
		close(r->evfd);
	free(r);
	return err;
}

void zk_dns_free(zk_dns_t *r)
{
	if (!r)
		return;
	pthread_mutex_lock(&r->lock);
	r->freeing = true;
	/* Lookups abandoned by cancelled tasks: end them (their callbacks find
	 * no waiter). */
	if (r->pending)
		ares_cancel(r->ch);
	if (r->driver_running) {
		/* The driver owns r from here: woken, it sees nothing pending
		 * and frees r on its way out. */
		poke(r);
		pthread_mutex_unlock(&r->lock);
		return;
	}
	pthread_mutex_unlock(&r->lock);
	destroy(r);
}

/* A numeric address: 1 (stored in out[0]), -ENODATA (numeric but of the
 * other family), or 0 (not numeric). */
static int numeric(const char *name, int family, struct sockaddr_storage *out)
{
	struct in_addr a4;
	struct in6_addr a6;
	if (inet_pton(AF_INET, name, &a4) == 1) {
		if (family == AF_INET6)
			return -ENODATA;
		struct sockaddr_in *sin = (struct sockaddr_in *)out;
		memset(sin, 0, sizeof(*sin));
		sin->sin_family = AF_INET;
		sin->sin_addr = a4;
		return 1;
	}
	if (inet_pton(AF_INET6, name, &a6) == 1) {
		if (family == AF_INET)
			return -ENODATA;
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)out;
		memset(sin6, 0, sizeof(*sin6));
		sin6->sin6_family = AF_INET6;
		sin6->sin6_addr = a6;
		return 1;
	}
	return 0;
}

/* Checks a host name (RFC 1123 lengths; letters, digits, '-', '_') and
 * lower-cases it into key (ZK__DNS_NAME_MAX + 1 bytes). */
static int normalize(const char *name, char *key, size_t *len)
{
	size_t n = 0, label = 0;
	for (const char *p = name; *p; p++) {
		unsigned char c = (unsigned char)*p;
		if (n >= ZK__DNS_NAME_MAX)
			return -EINVAL;
		if (c == '.') {
			if (label == 0)
				return -EINVAL;
			label = 0;
		} else {
			if (!isalnum(c) && c != '-' && c != '_')
				return -EINVAL;
			if (++label > 63)
				return -EINVAL;
			c = (unsigned char)tolower(c);
		}
		key[n++] = (char)c;
	}
	/* 253 bytes, or 254 with the trailing dot of an absolute name. */
	if (n == 0 || (n == ZK__DNS_NAME_MAX && key[n - 1] != '.'))
		return -EINVAL;
	key[n] = '\0';
	*len = n;
	return 0;
}

int zk_dns_lookup(zk_dns_t *r, const char *name, int family, struct sockaddr_storage *out,
		  size_t max)
{
	if (!zk__task_here())
		return -EPERM;
	if (!r || !name || !out || max == 0)
		return -EINVAL;
	if (family != AF_INET && family != AF_INET6 && family != AF_UNSPEC)
		return -EAFNOSUPPORT;
	int rc = numeric(name, family, out);
	if (rc != 0)
		return rc;
	char key[ZK__DNS_NAME_MAX + 1];
	size_t len;
	if ((rc = normalize(name, key, &len)) < 0)
		return rc;
	uint64_t hash = zk__dns_hash(key, len, family);

	bool use_cache = !(r->flags & ZK_DNS_NO_CACHE);
	if (use_cache && zk__dns_cache_get(&r->cache, key, len, family, hash, zk_now_ns(), out,
					   max, true, &rc))
		return rc; /* the hot path: one shard lock, not the resolver's */

	pthread_mutex_lock(&r->lock);
	if (!use_cache) {
		r->st.lookups++;
	} else if (zk__dns_cache_get(&r->cache, key, len, family, hash, zk_now_ns(), out, max,
				     false, &rc)) {
		/* A lookup of this name completed since the check above:
		 * its answer, not a second query. */
		pthread_mutex_unlock(&r->lock);
		return rc;
	}
	if (zk_cancelled()) {
		pthread_mutex_unlock(&r->lock);
		return -ECANCELED;
	}
	struct waiter w = {0};
	zk_oneshot_init(&w.done);
	bool start_driver = false;
	struct flight *f = flight_find(r, key, len, family, hash);
	if (f) {
		r->st.coalesced++;
		waiter_add(f, &w);
	} else {
		f = malloc(sizeof(*f) + len + 1);
		if (!f) {
			pthread_mutex_unlock(&r->lock);
			return -ENOMEM;
		}
		memcpy(f->key, key, len + 1);
		f->len = (uint16_t)len;
		f->family = family;
		f->hash = hash;
		f->r = r;
		f->waiters = NULL;
		f->hnext = *flight_slot(r, hash);
		*flight_slot(r, hash) = f;
		waiter_add(f, &w);
		r->pending++;
		r->st.resolves++;
		/* ENVHOSTS: $CARES_HOSTS, when set, replaces /etc/hosts (a
		 * c-ares feature; the tests use it for a private hosts file). */
		struct ares_addrinfo_hints hints = {.ai_family = family,
						    .ai_flags = ARES_AI_ENVHOSTS};
		r->submitting = f;
		/* May call gai_cb before it returns (/etc/hosts): f is gone. */
		ares_getaddrinfo(r->ch, key, NULL, &hints, gai_cb, f);
		r->submitting = NULL;
		if (r->pending > 0) {
			if (r->driver_running) {
				poke(r); /* the new query may have an earlier deadline */
			} else {
				r->driver_running = true;
				start_driver = true;
			}
		}
	}
	pthread_mutex_unlock(&r->lock);
	if (start_driver &&
	    zk__spawn_with_exit(zk_runtime_current(), NULL, driver_main, r, driver_exit, r) < 0) {
		driver_loop(r); /* no task for the driver: drive from here */
		driver_gone(r);
	}

	rc = zk_oneshot_recv(&w.done, NULL);
	pthread_mutex_lock(&r->lock);
	bool answered = w.f == NULL;
	if (!answered)
		waiter_remove(w.f, &w); /* cancelled before the answer */
	struct zk__dns_rec *rec = w.rec;
	pthread_mutex_unlock(&r->lock);
	if (!answered)
		return rc;
	if (!rec)
		return -ENOMEM;
	rc = zk__dns_rec_copy(rec, out, max);
	zk__dns_rec_put(rec);
	return rc;
}

void zk_dns_cache_clear(zk_dns_t *r)
{
	if (!r)
		return;
	zk__dns_cache_clear(&r->cache);
}

int zk_dns_stats(zk_dns_t *r, zk_dns_stats_t *st)
{
	if (!r || !st)
		return -EINVAL;
	pthread_mutex_lock(&r->lock);
	*st = r->st;
	pthread_mutex_unlock(&r->lock);
	uint64_t lookups, hits;
	zk__dns_cache_counts(&r->cache, &lookups, &hits);
	st->lookups += lookups;
	st->cache_hits += hits;
	return 0;
}
