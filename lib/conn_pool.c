/* lib/conn_pool.c — the client-side connection pool (zokio/pool.h).
 *
 * State, all under one pthread mutex that is never held across a
 * suspension: a list of keys (one per address), each with a LIFO stack of
 * idle connections (the top is the most recently returned, the warmest),
 * an fd-indexed table saying which key a checked-out fd belongs to, and
 * the count of open connections (idle + checked out) against max_total.
 *
 * Waiting for room: a get that finds no idle connection of its key, no free
 * slot under max_total and no idle connection of another key to evict
 * waits on `room`, a semaphore used as a counting wake-up: every put (and
 * every failed connect) while waiters > wakes releases one permit. A woken
 * waiter re-checks everything under the lock, so a wake-up that another
 * get overtook costs one loop, never a lost connection; wakes <= waiters
 * keeps the permits bounded.
 *
 * Closing: fds closed while the lock is held would be closed with close(2);
 * instead they are collected and closed after unlocking with zk_close (in a
 * task: a readiness backend then drops its registration at once). */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"
#include "net_internal.h"
#include "zokio/fs.h"
#include "zokio/net.h"
#include "zokio/pool.h"
#include "zokio/sync.h"
#include "zokio/time.h"

#define DEF_MAX_IDLE 8u
#define DEF_MAX_TOTAL 256u
#define DEF_IDLE_TIMEOUT_NS (90ull * ZK_NSEC_PER_SEC)
/* fds closed in one locked pass at most; the rest wait for the next. */
#define CLOSE_BATCH 16

struct idle_conn {
	int fd;
	uint64_t since; /* zk_now_ns() when it was put back */
};

struct pool_key {
	struct pool_key *next;
	struct sockaddr_storage addr;
	socklen_t len;
	unsigned nidle;
	struct idle_conn *idle; /* [max_idle], idle[nidle - 1] is the newest */
};

struct zk_pool {
	pthread_mutex_t lock;
	struct zk_pool_config cfg;
	struct pool_key *keys;
	struct pool_key **owner; /* owner[fd]: key of a checked-out fd */
	unsigned nowner;
	unsigned open;           /* idle + checked out + connecting */
	unsigned nidle;
	unsigned waiters, wakes;
	zk_sem_t room;
	struct zk_pool_stats st;
};

int zk_pool_create(zk_pool_t **out, const struct zk_pool_config *cfg)
{
	if (!out)
		return -EINVAL;
	struct zk_pool *p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	if (cfg)
		p->cfg = *cfg;
	if (!p->cfg.max_idle_per_key)
		p->cfg.max_idle_per_key = DEF_MAX_IDLE;
	if (!p->cfg.max_total)
		p->cfg.max_total = DEF_MAX_TOTAL;
	if (!p->cfg.idle_timeout_ns)
		p->cfg.idle_timeout_ns = DEF_IDLE_TIMEOUT_NS;
	pthread_mutex_init(&p->lock, NULL);
	zk_sem_init(&p->room, 0);
	*out = p;
	return 0;
}

int zk_pool_free(zk_pool_t *p)
{
	if (!p)
		return -EINVAL;
	pthread_mutex_lock(&p->lock);
	bool busy = p->open != p->nidle || p->waiters;
	pthread_mutex_unlock(&p->lock);
	if (busy)
		return -EBUSY;
	for (struct pool_key *k = p->keys, *next; k; k = next) {
		next = k->next;
		for (unsigned i = 0; i < k->nidle; i++)
			close(k->idle[i].fd);
		free(k->idle);
		free(k);
	}
	free(p->owner);
	zk_sem_destroy(&p->room);
	pthread_mutex_destroy(&p->lock);
	free(p);
	return 0;
}

/* The peer closed or reset an idle connection, or sent bytes nobody asked
 * for: it must not be handed out. One non-blocking peek. */
static bool conn_alive(int fd)
{
	char c;
	ssize_t r = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
	return r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

static struct pool_key *find_key(struct zk_pool *p, const struct sockaddr *sa, socklen_t len)
{
	for (struct pool_key *k = p->keys; k; k = k->next)
		if (k->len == len && memcmp(&k->addr, sa, len) == 0)
			return k;
	return NULL;
}

static struct pool_key *add_key(struct zk_pool *p, const struct sockaddr *sa, socklen_t len)
{
	struct pool_key *k = calloc(1, sizeof(*k));
	if (!k)
		return NULL;
	k->idle = calloc(p->cfg.max_idle_per_key, sizeof(*k->idle));
	if (!k->idle) {
		free(k);
		return NULL;
	}
	memcpy(&k->addr, sa, len);
	k->len = len;
	k->next = p->keys;
	p->keys = k;
	return k;
}

/* Records fd as checked out under k. */
static int own(struct zk_pool *p, int fd, struct pool_key *k)
{
	if ((unsigned)fd >= p->nowner) {
		unsigned n = p->nowner ? p->nowner : 64;
		while (n <= (unsigned)fd)
			n *= 2;
		struct pool_key **o = realloc(p->owner, n * sizeof(*o));
		if (!o)
			return -ENOMEM;
		memset(o + p->nowner, 0, (n - p->nowner) * sizeof(*o));
		p->owner = o;
		p->nowner = n;
	}
	p->owner[fd] = k;
	return 0;
}

/* Lock held. Wakes one waiter if some waiter has no wake-up coming. */
static void wake_one(struct zk_pool *p)
{
	if (p->waiters > p->wakes) {
		p->wakes++;
		zk_sem_release(&p->room, 1);
	}
}

/* Lock held. Removes idle[i] of k. */
static int take_idle(struct zk_pool *p, struct pool_key *k, unsigned i)
{
	int fd = k->idle[i].fd;
	memmove(&k->idle[i], &k->idle[i + 1], (k->nidle - i - 1) * sizeof(k->idle[0]));
	k->nidle--;
	p->nidle--;
	return fd;
}

/* Lock held. Drops the expired idle connections of k (the oldest are at
 * the bottom of its stack) into the close list. */
static void expire_key(struct zk_pool *p, struct pool_key *k, uint64_t now, int *cl, unsigned *ncl)
{
	while (k->nidle && *ncl < CLOSE_BATCH &&
	       now - k->idle[0].since >= p->cfg.idle_timeout_ns) {
		cl[(*ncl)++] = take_idle(p, k, 0);
		p->open--;
		p->st.expired++;
	}
}

static void close_all(int *cl, unsigned n)
{
	bool in_task = zk__task_here() != NULL;
	for (unsigned i = 0; i < n; i++) {
		if (in_task)
			zk_close(cl[i]);
		else
			close(cl[i]);
	}
}

/* A new connection to k's address. Returns the fd or -errno. */
static int dial(struct zk_pool *p, const struct sockaddr *sa, socklen_t len)
{
	if (p->cfg.connect_timeout_ns)
		zk_timeout_next(p->cfg.connect_timeout_ns);
	return zk__sock_connect(sa->sa_family, SOCK_STREAM, sa, len);
}

int zk_pool_get_addr(zk_pool_t *p, const struct sockaddr *sa, socklen_t len)
{
	if (!zk__task_here())
		return -EPERM;
	if (!p || !sa || len > (socklen_t)sizeof(struct sockaddr_storage) ||
	    len < (socklen_t)sizeof(sa_family_t))
		return -EINVAL;
	if (sa->sa_family != AF_INET && sa->sa_family != AF_INET6 && sa->sa_family != AF_UNIX)
		return -EAFNOSUPPORT;
	int cl[CLOSE_BATCH];
	for (;;) {
		unsigned ncl = 0;
		int fd = -1;
		bool slot = false;
		pthread_mutex_lock(&p->lock);
		struct pool_key *k = find_key(p, sa, len);
		if (!k && !(k = add_key(p, sa, len))) {
			pthread_mutex_unlock(&p->lock);
			return -ENOMEM;
		}
		uint64_t now = zk_now_ns();
		expire_key(p, k, now, cl, &ncl);
		/* Newest idle first, checking each. */
		while (k->nidle && ncl < CLOSE_BATCH) {
			int c = take_idle(p, k, k->nidle - 1);
			if (conn_alive(c)) {
				fd = c;
				break;
			}
			cl[ncl++] = c;
			p->open--;
			p->st.dead++;
		}
		if (fd >= 0) {
			if (own(p, fd, k) < 0) {
				cl[ncl++] = fd;
				p->open--;
				fd = -ENOMEM;
			} else {
				p->st.reuses++;
			}
		} else if (p->open < p->cfg.max_total) {
			p->open++; /* our slot, held while connecting */
			slot = true;
		} else {
			/* Full: evict the oldest idle connection of another key
			 * and take its slot. */
			struct pool_key *victim = NULL;
			for (struct pool_key *o = p->keys; o; o = o->next)
				if (o->nidle && (!victim || o->idle[0].since < victim->idle[0].since))
					victim = o;
			if (victim && ncl < CLOSE_BATCH) {
				cl[ncl++] = take_idle(p, victim, 0);
				p->st.evicted++;
				slot = true;
			}
		}
		bool wait = fd == -1 && !slot && ncl == 0;
		if (wait)
			p->waiters++;
		if (ncl && fd == -1 && !slot)
			wake_one(p); /* closed some: room for someone */
		pthread_mutex_unlock(&p->lock);
		close_all(cl, ncl);
		if (fd != -1)
			return fd;
		if (slot) {
			int c = dial(p, sa, len);
			pthread_mutex_lock(&p->lock);
			if (c >= 0 && own(p, c, k) < 0) {
				close(c);
				c = -ENOMEM;
			}
			if (c < 0) {
				p->open--;
				wake_one(p);
			} else {
				p->st.connects++;
			}
			pthread_mutex_unlock(&p->lock);
			return c;
		}
		if (!wait)
			continue; /* closed a batch of dead ones: look again */
		int r = zk_sem_acquire(&p->room, 1);
		pthread_mutex_lock(&p->lock);
		p->waiters--;
		if (r == 0)
			p->wakes--;
		pthread_mutex_unlock(&p->lock);
		if (r < 0)
			return r;
	}
}

int zk_pool_get(zk_pool_t *p, const char *addr)
{
	if (!zk__task_here())
		return -EPERM;
	if (!p)
		return -EINVAL;
	struct sockaddr_storage ss;
	socklen_t len;
	int r = zk_addr_parse(addr, &ss, &len);
	if (r < 0)
		return r;
	return zk_pool_get_addr(p, (struct sockaddr *)&ss, len);
}

int zk_pool_put(zk_pool_t *p, int fd, bool reusable)
{
	if (!p || fd < 0)
		return -EINVAL;
	pthread_mutex_lock(&p->lock);
	struct pool_key *k = (unsigned)fd < p->nowner ? p->owner[fd] : NULL;
	if (!k) {
		pthread_mutex_unlock(&p->lock);
		return -EINVAL;
	}
	p->owner[fd] = NULL;
	bool keep = reusable && k->nidle < p->cfg.max_idle_per_key;
	if (keep) {
		k->idle[k->nidle++] = (struct idle_conn){.fd = fd, .since = zk_now_ns()};
		p->nidle++;
	} else {
		p->open--;
	}
	wake_one(p);
	pthread_mutex_unlock(&p->lock);
	if (!keep)
		close_all(&fd, 1);
	return 0;
}

int zk_pool_reap(zk_pool_t *p)
{
	if (!p)
		return -EINVAL;
	int total = 0;
	for (;;) {
		int cl[CLOSE_BATCH];
		unsigned ncl = 0;
		pthread_mutex_lock(&p->lock);
		uint64_t now = zk_now_ns();
		for (struct pool_key *k = p->keys; k && ncl < CLOSE_BATCH; k = k->next)
			expire_key(p, k, now, cl, &ncl);
		if (ncl)
			wake_one(p);
		pthread_mutex_unlock(&p->lock);
		close_all(cl, ncl);
		total += (int)ncl;
		if (ncl < CLOSE_BATCH)
			return total;
	}
}

int zk_pool_stats(zk_pool_t *p, struct zk_pool_stats *st)
{
	if (!p || !st)
		return -EINVAL;
	pthread_mutex_lock(&p->lock);
	*st = p->st;
	st->idle = p->nidle;
	st->in_use = p->open - p->nidle;
	st->waiting = p->waiters;
	pthread_mutex_unlock(&p->lock);
	return 0;
}
