/* lib/histogram.c — log-linear (HDR-style) histograms: zk_histogram_t and
 * the worker-owned struct zk__hist.
 *
 * A value below 2^SUB (8) has its own bucket; above, the bucket is picked by
 * the position of the highest set bit (the power of two) and the SUB bits
 * under it (eight linear steps inside that power of two). So every bucket
 * is at most 1/8 of its lowest value wide, the bucket index is a
 * count-leading-zeros and two shifts, and two histograms merge by adding
 * their buckets. Values from 2^40 ns (about 18 minutes) up share the last
 * bucket. */
#include <string.h>

#include "histogram.h"

#define SUB ZK_HIST_SUB_BITS
#define SUBN (1u << SUB)
#define TOP_BIT 40u /* values >= 2^40 go to the last bucket */

_Static_assert((TOP_BIT - SUB + 1) * SUBN == ZK_HIST_BUCKETS, "bucket count");

unsigned zk_histogram_bucket(uint64_t v)
{
	if (v < SUBN)
		return (unsigned)v;
	if (v >> TOP_BIT)
		return ZK_HIST_BUCKETS - 1;
	unsigned e = 63u - (unsigned)__builtin_clzll(v); /* SUB..TOP_BIT-1 */
	unsigned sub = (unsigned)(v >> (e - SUB)) & (SUBN - 1);
	return (e - SUB + 1) * SUBN + sub;
}

uint64_t zk_histogram_bucket_low(unsigned i)
{
	if (i < SUBN)
		return i;
	if (i >= ZK_HIST_BUCKETS)
		i = ZK_HIST_BUCKETS - 1;
	unsigned e = i / SUBN + SUB - 1;
	uint64_t sub = i % SUBN;
	return (SUBN + sub) << (e - SUB);
}

uint64_t zk_histogram_bucket_high(unsigned i)
{
	if (i < SUBN)
		return i;
	if (i >= ZK_HIST_BUCKETS - 1)
		return UINT64_MAX;
	unsigned e = i / SUBN + SUB - 1;
	return zk_histogram_bucket_low(i) + (1ull << (e - SUB)) - 1;
}

void zk_histogram_record(zk_histogram_t *h, uint64_t v)
{
	h->buckets[zk_histogram_bucket(v)]++;
	if (h->count == 0 || v < h->min)
		h->min = v;
	if (h->count == 0 || v > h->max)
		h->max = v;
	h->count++;
	h->sum += v;
}

void zk_histogram_merge(zk_histogram_t *dst, const zk_histogram_t *src)
{
	if (!dst || !src || src->count == 0)
		return;
	for (unsigned i = 0; i < ZK_HIST_BUCKETS; i++)
		dst->buckets[i] += src->buckets[i];
	if (dst->count == 0 || src->min < dst->min)
		dst->min = src->min;
	if (dst->count == 0 || src->max > dst->max)
		dst->max = src->max;
	dst->count += src->count;
	dst->sum += src->sum;
}

uint64_t zk_histogram_percentile(const zk_histogram_t *h, double p)
{
	if (!h || h->count == 0)
		return 0;
	if (!(p > 0.0))
		return h->min;
	if (p >= 100.0)
		return h->max;
	/* The rank of the wanted value, 1-based: ceil(p% of count). */
	double r = p / 100.0 * (double)h->count;
	uint64_t rank = (uint64_t)r;
	if ((double)rank < r)
		rank++;
	if (rank == 0)
		rank = 1;
	uint64_t seen = 0;
	for (unsigned i = 0; i < ZK_HIST_BUCKETS; i++) {
		seen += h->buckets[i];
		if (seen >= rank) {
			uint64_t v = zk_histogram_bucket_high(i);
			if (v > h->max)
				v = h->max;
			if (v < h->min)
				v = h->min;
			return v;
		}
	}
	return h->max; /* buckets and count disagree (a racy snapshot) */
}

double zk_histogram_mean(const zk_histogram_t *h)
{
	return h && h->count ? (double)h->sum / (double)h->count : 0.0;
}

void zk__hist_record(struct zk__hist *h, uint64_t v)
{
	_Atomic uint64_t *b = &h->b[zk_histogram_bucket(v)];
	atomic_store_explicit(b, atomic_load_explicit(b, memory_order_relaxed) + 1,
			      memory_order_relaxed);
	atomic_store_explicit(&h->count, atomic_load_explicit(&h->count, memory_order_relaxed) + 1,
			      memory_order_relaxed);
	atomic_store_explicit(&h->sum, atomic_load_explicit(&h->sum, memory_order_relaxed) + v,
			      memory_order_relaxed);
	if (v > atomic_load_explicit(&h->max, memory_order_relaxed))
		atomic_store_explicit(&h->max, v, memory_order_relaxed);
	if (~v > atomic_load_explicit(&h->min_inv, memory_order_relaxed))
		atomic_store_explicit(&h->min_inv, ~v, memory_order_relaxed);
}

void zk__hist_read(const struct zk__hist *h, zk_histogram_t *out)
{
	zk_histogram_t one;
	memset(&one, 0, sizeof(one));
	/* The count is the buckets' sum, so percentiles stay consistent even
	 * when the owner records while we copy. */
	for (unsigned i = 0; i < ZK_HIST_BUCKETS; i++) {
		one.buckets[i] = atomic_load_explicit(&h->b[i], memory_order_relaxed);
		one.count += one.buckets[i];
	}
	if (one.count == 0)
		return;
	one.sum = atomic_load_explicit(&h->sum, memory_order_relaxed);
	one.max = atomic_load_explicit(&h->max, memory_order_relaxed);
	one.min = ~atomic_load_explicit(&h->min_inv, memory_order_relaxed);
	if (one.min > one.max)
		one.min = one.max;
	zk_histogram_merge(out, &one);
}
