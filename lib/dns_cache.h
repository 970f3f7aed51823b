/* lib/dns_cache.h — the resolver's answer records and its TTL cache.
 *
 * The cache locks itself, in shards: a cache hit takes one shard's mutex
 * and nothing else, so hits on different workers rarely meet on a lock and
 * never wait for the resolver's c-ares work. Lock order: the resolver's
 * lock may be held when a shard's is taken (the c-ares callback caches an
 * answer), never the other way round. Records are shared between the cache
 * and the tasks that waited for a lookup, hence the reference count. */
#ifndef ZOKIO_DNS_CACHE_H
#define ZOKIO_DNS_CACHE_H

#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Longest name kept (253 bytes, plus a trailing dot). */
#define ZK__DNS_NAME_MAX 254

/* Independent parts of the cache, picked by the key's hash. A power of two;
 * 16 keeps two workers hitting different names on different locks nearly
 * always, at 16 cache lines of mutexes per resolver. */
#define ZK__DNS_SHARDS 16u

union zk__dns_addr {
	struct sockaddr sa;
	struct sockaddr_in in;
	struct sockaddr_in6 in6;
};

/* One lookup's outcome, immutable once built. */
struct zk__dns_rec {
	_Atomic uint32_t refs;
	int status;                  /* 0, or the lookup's -errno */
	uint32_t n;                  /* addresses in addrs[] */
	union zk__dns_addr addrs[];
};

/* A record with refs 1, room for n addresses (n filled by the caller), or
 * NULL when out of memory. */
struct zk__dns_rec *zk__dns_rec_new(int status, uint32_t n);
struct zk__dns_rec *zk__dns_rec_get(struct zk__dns_rec *rec);
void zk__dns_rec_put(struct zk__dns_rec *rec);

/* What a lookup returns for rec: its error, or how many of its addresses
 * were copied to out[0..max). */
int zk__dns_rec_copy(const struct zk__dns_rec *rec, struct sockaddr_storage *out, size_t max);

struct zk__dns_centry;

struct zk__dns_shard {
	_Alignas(64) pthread_mutex_t lock;
	struct zk__dns_centry **buckets;
	size_t mask;                       /* buckets - 1 (a power of two) */
	size_t count;
	size_t max;
	/* Insertion order: eviction takes the oldest when the shard is full.
	 * FIFO rather than LRU so that a hit writes nothing but counters. */
	struct zk__dns_centry *oldest, *newest;
	uint64_t lookups;                  /* zk__dns_cache_get calls counted */
	uint64_t hits;
};

struct zk__dns_cache {
	struct zk__dns_shard shards[ZK__DNS_SHARDS];
};

/* FNV-1a of the (already lower-cased) name and the family. */
uint64_t zk__dns_hash(const char *key, size_t len, int family);

/* Room for about max names in all. Returns 0 or -ENOMEM. */
int zk__dns_cache_init(struct zk__dns_cache *c, size_t max);
void zk__dns_cache_fini(struct zk__dns_cache *c);

/* If (key, family) has an answer that has not expired at now_ns, copies it
 * out (zk__dns_rec_copy), stores the result in *rc and returns true; an
 * expired entry is dropped on the way. count_lookup: count this call in
 * the shard's lookups (hits are always counted). */
bool zk__dns_cache_get(struct zk__dns_cache *c, const char *key, size_t len, int family,
		       uint64_t hash, uint64_t now_ns, struct sockaddr_storage *out, size_t max,
		       bool count_lookup, int *rc);

/* Caches rec (taking a reference) for (key, family) until expires_ns,
 * replacing an older entry for the same key and evicting the shard's oldest
 * entry when it is full. Returns 0 or -ENOMEM (nothing cached). */
int zk__dns_cache_put(struct zk__dns_cache *c, const char *key, size_t len, int family,
		      uint64_t hash, struct zk__dns_rec *rec, uint64_t expires_ns);

/* Drops every entry. */
void zk__dns_cache_clear(struct zk__dns_cache *c);

/* Sums of the shards' counters. */
void zk__dns_cache_counts(struct zk__dns_cache *c, uint64_t *lookups, uint64_t *hits);

#endif
