/* lib/http/date.c — the Date response header, formatted once a second.
 *
 * Every response carries "Date: Tue, 24 Nov 2026 23:55:27 GMT" (RFC 9110
 * 6.6.1, IMF-fixdate). Formatting it costs a gmtime_r and a strftime;
 * instead one formatted copy is shared by every worker and redone only
 * when the second changes. A seqlock keeps the copy consistent: readers
 * retry if a writer was at work, writers are serialised by a trylock (a
 * worker that loses the race formats its own copy on its stack, so nobody
 * ever waits). */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "http_internal.h"

static _Atomic uint64_t seq;       /* odd while a writer is at work */
static _Atomic int64_t cached_sec = -1;
static char cached[ZK__HTTP_DATE_LINE + 1];
static pthread_mutex_t writer = PTHREAD_MUTEX_INITIALIZER;

static void format(char *out, time_t sec)
{
	struct tm tm;
	gmtime_r(&sec, &tm);
	char tmp[64];
	strftime(tmp, sizeof(tmp), "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
	memcpy(out, tmp, ZK__HTTP_DATE_LINE);
}

void zk__http_date_line(char *out)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME_COARSE, &ts);
	int64_t now = (int64_t)ts.tv_sec;
	if (atomic_load_explicit(&cached_sec, memory_order_acquire) == now) {
		for (int tries = 0; tries < 4; tries++) {
			uint64_t s0 = atomic_load_explicit(&seq, memory_order_acquire);
			if (s0 & 1)
				break;
			char tmp[ZK__HTTP_DATE_LINE];
			for (int i = 0; i < ZK__HTTP_DATE_LINE; i++)
				tmp[i] = atomic_load_explicit((_Atomic char *)&cached[i],
							      memory_order_relaxed);
			atomic_thread_fence(memory_order_acquire);
			if (atomic_load_explicit(&seq, memory_order_relaxed) == s0 &&
			    atomic_load_explicit(&cached_sec, memory_order_relaxed) == now) {
				memcpy(out, tmp, ZK__HTTP_DATE_LINE);
				return;
			}
		}
	}
	format(out, (time_t)now);
	if (pthread_mutex_trylock(&writer) != 0)
		return;
	atomic_fetch_add_explicit(&seq, 1, memory_order_acq_rel);
	atomic_thread_fence(memory_order_release);
	for (int i = 0; i < ZK__HTTP_DATE_LINE; i++)
		atomic_store_explicit((_Atomic char *)&cached[i], out[i], memory_order_relaxed);
	atomic_store_explicit(&cached_sec, now, memory_order_release);
	atomic_fetch_add_explicit(&seq, 1, memory_order_release);
	pthread_mutex_unlock(&writer);
}
