/* lib/histogram.h — the runtime's own histograms: the log-linear buckets of
 * zk_histogram_t (zokio/metrics.h) kept in relaxed atomics, so that one
 * worker records while a snapshot reads from another thread. */
#ifndef ZOKIO_HISTOGRAM_H
#define ZOKIO_HISTOGRAM_H

#include <stdatomic.h>
#include <stdint.h>

#include "zokio/metrics.h"

struct zk__hist {
	_Atomic uint64_t count;
	_Atomic uint64_t sum;
	_Atomic uint64_t max;
	_Atomic uint64_t min_inv;   /* ~min: the zeroed record means "none" */
	_Atomic uint64_t b[ZK_HIST_BUCKETS];
};

/* Single writer: the worker that owns h. */
void zk__hist_record(struct zk__hist *h, uint64_t v);
/* Adds h's figures to out (any thread). */
void zk__hist_read(const struct zk__hist *h, zk_histogram_t *out);

#endif
