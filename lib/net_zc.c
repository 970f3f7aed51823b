/* lib/net_zc.c — zero-copy sends (io_uring SEND_ZC) and the size from
 * which zk_send_all() uses them.
 *
 * A zero-copy send pins the caller's pages instead of copying them into
 * the socket buffer, and the kernel reports a second completion (the
 * notification) once the NIC no longer needs them; the op completes only
 * then (backends/io_uring/io_uring.c), so buf is the caller's again when
 * zk_send_zc() returns. Pinning and the extra completion cost more than
 * copying a small buffer: see ZK__SEND_ZC_MIN_DEFAULT for where it wins. */
#include <errno.h>
#include <limits.h>
#include <stdatomic.h>

#include "internal.h"
#include "zokio/net.h"

/* Measured (2026-11-24, 2-core VM, kernel 6.18, loopback TCP, 512 MiB per
 * run, 3 interleaved rounds, median GB/s copy -> zero-copy, one call at a
 * time as zk_send_all makes them):
 *     4 KiB 0.33 -> 0.18   16 KiB 0.74 -> 0.68   64 KiB 1.58 -> 1.41
 *    96 KiB 2.95 -> 2.53  128 KiB 1.91 -> 2.76  256 KiB 1.81 -> 3.00
 *   512 KiB 2.17 -> 2.88    1 MiB 1.28 -> 0.80
 * Below 128 KiB pinning and the notification cost more than the copy.
 * Above ~512 KiB per call it loses again: each call waits for its
 * notification, which on loopback comes only once the receiver has
 * consumed the data, so sends stop overlapping. Hence zk_send_all sends
 * pieces of at least ZK__SEND_ZC_MIN_DEFAULT zero-copy, in calls of at
 * most ZK__SEND_ZC_PIECE. A real NIC notifies at transmit time; retune
 * with zk_send_zc_set_min() there. */
#define ZK__SEND_ZC_MIN_DEFAULT (128u << 10)
#define ZK__SEND_ZC_PIECE (512u << 10)

static _Atomic size_t zc_min = ZK__SEND_ZC_MIN_DEFAULT;
static _Atomic bool zc_missing; /* the kernel said -EOPNOTSUPP once */

ssize_t zk_send_zc(int fd, const void *buf, size_t len, int flags)
{
	struct zk__op op = {.opcode = ZK__OP_SEND_ZC, .fd = fd, .cbuf = buf,
			    .len = len > INT_MAX ? INT_MAX : (uint32_t)len, .flags = (uint32_t)flags};
	int r = zk__op_run(&op);
	if (r == -EOPNOTSUPP)
		atomic_store_explicit(&zc_missing, true, memory_order_relaxed);
	return r;
}

size_t zk_send_zc_min(void)
{
	return atomic_load_explicit(&zc_min, memory_order_relaxed);
}

void zk_send_zc_set_min(size_t bytes)
{
	atomic_store_explicit(&zc_min, bytes, memory_order_relaxed);
}

size_t zk__send_zc_piece(size_t len)
{
	size_t min = atomic_load_explicit(&zc_min, memory_order_relaxed);
	if (!min || len < min || atomic_load_explicit(&zc_missing, memory_order_relaxed))
		return 0;
	return len > ZK__SEND_ZC_PIECE ? ZK__SEND_ZC_PIECE : len;
}
