/* lib/dns_cache.c — answer records and the resolver's TTL cache: shards of
 * chained hash tables keyed by (lower-cased name, family), each bounded,
 * each under its own mutex, oldest-first eviction, expiry checked on every
 * hit. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "dns_cache.h"

struct zk__dns_centry {
	struct zk__dns_centry *hnext;         /* hash chain */
	struct zk__dns_centry *older, *newer; /* insertion order */
	uint64_t hash;
	uint64_t expires_ns;                  /* zk_now_ns() after which it is stale */
	struct zk__dns_rec *rec;              /* one reference held */
	int family;
	uint16_t len;
	char key[];                           /* lower-cased name, NUL-terminated */
};

struct zk__dns_rec *zk__dns_rec_new(int status, uint32_t n)
{
	struct zk__dns_rec *rec = malloc(sizeof(*rec) + (size_t)n * sizeof(rec->addrs[0]));
	if (!rec)
		return NULL;
	atomic_init(&rec->refs, 1);
	rec->status = status;
	rec->n = n;
	return rec;
}

struct zk__dns_rec *zk__dns_rec_get(struct zk__dns_rec *rec)
{
	atomic_fetch_add_explicit(&rec->refs, 1, memory_order_relaxed);
	return rec;
}

void zk__dns_rec_put(struct zk__dns_rec *rec)
{
	if (rec && atomic_fetch_sub_explicit(&rec->refs, 1, memory_order_acq_rel) == 1)
		free(rec);
}

int zk__dns_rec_copy(const struct zk__dns_rec *rec, struct sockaddr_storage *out, size_t max)
{
	if (rec->status < 0)
		return rec->status;
	size_t n = rec->n < max ? rec->n : max;
	for (size_t i = 0; i < n; i++)
		memcpy(&out[i], &rec->addrs[i], sizeof(rec->addrs[i]));
	return (int)n;
}

uint64_t zk__dns_hash(const char *key, size_t len, int family)
{
	uint64_t h = 1469598103934665603ull ^ (uint64_t)family;
	for (size_t i = 0; i < len; i++) {
		h ^= (unsigned char)key[i];
		h *= 1099511628211ull;
	}
	return h;
}

/* The top bits pick the shard, the low bits the bucket: independent. */
static struct zk__dns_shard *shard_of(struct zk__dns_cache *c, uint64_t hash)
{
	return &c->shards[hash >> 60 & (ZK__DNS_SHARDS - 1)];
}

int zk__dns_cache_init(struct zk__dns_cache *c, size_t max)
{
	size_t per = (max + ZK__DNS_SHARDS - 1) / ZK__DNS_SHARDS;
	size_t nb = 8;
	while (nb < per && nb < ((size_t)1 << 16))
		nb <<= 1;
	memset(c, 0, sizeof(*c));
	for (unsigned i = 0; i < ZK__DNS_SHARDS; i++) {
		struct zk__dns_shard *s = &c->shards[i];
		s->buckets = calloc(nb, sizeof(s->buckets[0]));
		if (!s->buckets) {
			while (i-- > 0) {
				free(c->shards[i].buckets);
				pthread_mutex_destroy(&c->shards[i].lock);
			}
			return -ENOMEM;
		}
		pthread_mutex_init(&s->lock, NULL);
		s->mask = nb - 1;
		s->max = per;
	}
	return 0;
}

static void unlink_entry(struct zk__dns_shard *s, struct zk__dns_centry *e)
{
	struct zk__dns_centry **pp = &s->buckets[e->hash & s->mask];
	while (*pp != e)
		pp = &(*pp)->hnext;
	*pp = e->hnext;
	if (e->older)
		e->older->newer = e->newer;
	else
		s->oldest = e->newer;
	if (e->newer)
		e->newer->older = e->older;
	else
		s->newest = e->older;
	s->count--;
	zk__dns_rec_put(e->rec);
	free(e);
}

static struct zk__dns_centry *lookup(struct zk__dns_shard *s, const char *key, size_t len,
				     int family, uint64_t hash)
{
	for (struct zk__dns_centry *e = s->buckets[hash & s->mask]; e; e = e->hnext)
		if (e->hash == hash && e->family == family && e->len == len &&
		    memcmp(e->key, key, len) == 0)
			return e;
	return NULL;
}

bool zk__dns_cache_get(struct zk__dns_cache *c, const char *key, size_t len, int family,
		       uint64_t hash, uint64_t now_ns, struct sockaddr_storage *out, size_t max,
		       bool count_lookup, int *rc)
{
	struct zk__dns_shard *s = shard_of(c, hash);
	pthread_mutex_lock(&s->lock);
	if (count_lookup)
		s->lookups++;
	struct zk__dns_centry *e = lookup(s, key, len, family, hash);
	bool hit = false;
	if (e && now_ns >= e->expires_ns) {
		unlink_entry(s, e);
	} else if (e) {
		s->hits++;
		*rc = zk__dns_rec_copy(e->rec, out, max);
		hit = true;
	}
	pthread_mutex_unlock(&s->lock);
	return hit;
}

int zk__dns_cache_put(struct zk__dns_cache *c, const char *key, size_t len, int family,
		      uint64_t hash, struct zk__dns_rec *rec, uint64_t expires_ns)
{
	struct zk__dns_shard *s = shard_of(c, hash);
	struct zk__dns_centry *e = malloc(sizeof(*e) + len + 1);
	if (!e)
		return -ENOMEM;
	memcpy(e->key, key, len);
	e->key[len] = '\0';
	e->len = (uint16_t)len;
	e->family = family;
	e->hash = hash;
	e->expires_ns = expires_ns;
	e->rec = zk__dns_rec_get(rec);
	pthread_mutex_lock(&s->lock);
	struct zk__dns_centry *old = lookup(s, key, len, family, hash);
	if (old)
		unlink_entry(s, old);
	while (s->count >= s->max && s->oldest)
		unlink_entry(s, s->oldest);
	struct zk__dns_centry **b = &s->buckets[hash & s->mask];
	e->hnext = *b;
	*b = e;
	e->newer = NULL;
	e->older = s->newest;
	if (s->newest)
		s->newest->newer = e;
	else
		s->oldest = e;
	s->newest = e;
	s->count++;
	pthread_mutex_unlock(&s->lock);
	return 0;
}

void zk__dns_cache_clear(struct zk__dns_cache *c)
{
	for (unsigned i = 0; i < ZK__DNS_SHARDS; i++) {
		struct zk__dns_shard *s = &c->shards[i];
		pthread_mutex_lock(&s->lock);
		while (s->oldest)
			unlink_entry(s, s->oldest);
		pthread_mutex_unlock(&s->lock);
	}
}

void zk__dns_cache_counts(struct zk__dns_cache *c, uint64_t *lookups, uint64_t *hits)
{
	*lookups = *hits = 0;
	for (unsigned i = 0; i < ZK__DNS_SHARDS; i++) {
		struct zk__dns_shard *s = &c->shards[i];
		pthread_mutex_lock(&s->lock);
		*lookups += s->lookups;
		*hits += s->hits;
		pthread_mutex_unlock(&s->lock);
	}
}

void zk__dns_cache_fini(struct zk__dns_cache *c)
{
	zk__dns_cache_clear(c);
	for (unsigned i = 0; i < ZK__DNS_SHARDS; i++) {
		free(c->shards[i].buckets);
		c->shards[i].buckets = NULL;
		pthread_mutex_destroy(&c->shards[i].lock);
	}
}
