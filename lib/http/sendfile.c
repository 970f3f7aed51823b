/* lib/http/sendfile.c — zk_sendfile: file to socket without a user-space
 * copy, as two splices through a pipe.
 *
 * io_uring has no sendfile op, but it has splice: file -> pipe moves page
 * references into the pipe (no copy), pipe -> socket hands them to the
 * socket. Each splice is one ZK__OP_SPLICE op, so the task suspends on the
 * ring like any other I/O (on epoll: a non-blocking splice retried on
 * writability). The pipe holds bytes only inside one call (and is taken
 * only by a call that splices); between calls it is empty and goes back to
 * a small process-wide pool, so a server
 * keeps a handful of pipes, not one per connection. A call that fails with
 * bytes still in its pipe closes that pipe instead of returning it.
 *
 * The socket is made non-blocking for the call (its O_NONBLOCK flag is put
 * back after): see the comment in zk_sendfile.
 *
 * Pipes are resized to PIPE_BYTES when the system allows (fewer, larger
 * splices: a 1 MiB file is two ops, not thirty-two).
 *
 * Fast path: io_uring always runs a splice on its worker threads (a
 * hand-off per op, two per chunk). When the next chunk of the file is all
 * in the page cache (cachestat(2), Linux 6.5+), sendfile(2) to the
 * non-blocking socket cannot wait for anything: it copies cached pages
 * into the socket, or returns -EAGAIN and the task waits for room with
 * zk_poll on the ring, as the splice path does. So such chunks go out
 * with one direct syscall each. A chunk with a page missing (it would be
 * read from disk on the worker) takes the splice path. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/sendfile.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "../internal.h"
#include "zokio/fs.h"
#include "zokio/http.h"

#define PIPE_BYTES (1 << 20)
#define POOL_MAX 64

struct zpipe {
	int rd, wr;
	int size;
};

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static struct zpipe pool[POOL_MAX];
static int npool;

static int pipe_get(struct zpipe *p)
{
	pthread_mutex_lock(&pool_lock);
	if (npool > 0) {
		*p = pool[--npool];
		pthread_mutex_unlock(&pool_lock);
		return 0;
	}
	pthread_mutex_unlock(&pool_lock);
	int fds[2];
	if (pipe2(fds, O_CLOEXEC) < 0)
		return -errno;
	p->rd = fds[0];
	p->wr = fds[1];
	int sz = fcntl(p->wr, F_SETPIPE_SZ, PIPE_BYTES);
	if (sz < 0)
		sz = fcntl(p->wr, F_GETPIPE_SZ);
	p->size = sz > 0 ? sz : 65536;
	return 0;
}

static void pipe_put(struct zpipe *p, bool clean)
{
	if (clean) {
		pthread_mutex_lock(&pool_lock);
		if (npool < POOL_MAX) {
			pool[npool++] = *p;
			pthread_mutex_unlock(&pool_lock);
			return;
		}
		pthread_mutex_unlock(&pool_lock);
	}
	close(p->rd);
	close(p->wr);
}

/* cachestat(2); not in older kernel headers. 451 on every architecture. */
#ifndef __NR_cachestat
#define __NR_cachestat 451
#endif
struct zk__cachestat_range {
	uint64_t off, len;
};
struct zk__cachestat {
	uint64_t nr_cache, nr_dirty, nr_writeback, nr_evicted, nr_recently_evicted;
};
/* Bytes per direct sendfile: a cachestat covers at most this much. */
#define DIRECT_CHUNK (1u << 20)

static atomic_bool no_cachestat;

/* Whether in_fd's bytes [off, off + len) are all in the page cache. */
static bool cached(int in_fd, int64_t off, size_t len)
{
	if (atomic_load_explicit(&no_cachestat, memory_order_relaxed))
		return false;
	long pg = sysconf(_SC_PAGESIZE);
	uint64_t first = (uint64_t)off / (uint64_t)pg;
	uint64_t last = ((uint64_t)off + len + (uint64_t)pg - 1) / (uint64_t)pg;
	struct zk__cachestat_range rg = {first * (uint64_t)pg, (last - first) * (uint64_t)pg};
	struct zk__cachestat cs;
	if (syscall(__NR_cachestat, in_fd, &rg, &cs, 0) < 0) {
		if (errno == ENOSYS)
			atomic_store_explicit(&no_cachestat, true, memory_order_relaxed);
		return false;
	}
	return cs.nr_cache >= last - first;
}

static int splice_op(struct zk_task *t, uint64_t timeout, int out, int in, int64_t in_off,
		     size_t len, unsigned flags)
{
	struct zk__op op = {.opcode = ZK__OP_SPLICE, .fd = out, .off = -1, .fd2 = in,
			    .off2 = in_off, .len = (uint32_t)len, .flags = flags};
	t->next_timeout_ns = timeout;
	return zk__op_run(&op);
}

ssize_t zk_sendfile(int out_sock, int in_fd, int64_t off, size_t len)
{
	struct zk_task *t = zk__task_here();
	if (!t)
		return -EPERM;
	uint64_t timeout = t->next_timeout_ns;
	t->next_timeout_ns = 0;
	if (off < 0)
		return -EINVAL;
	if (len == 0)
		return 0;
	/* The pipe is taken only when a chunk must be spliced: a cached
	 * file goes out by sendfile and never needs one. */
	struct zpipe p;
	bool have_pipe = false;
	int r;
	/* A blocking splice into a full socket runs on io_uring's worker
	 * threads and a linked timeout cannot interrupt it: a client that
	 * stops reading would hold the task forever. Non-blocking, the splice
	 * ends with -EAGAIN and the task waits with zk_poll, which the timeout
	 * and cancellation do end. */
	int fl = fcntl(out_sock, F_GETFL);
	bool flipped = fl >= 0 && !(fl & O_NONBLOCK) && fcntl(out_sock, F_SETFL, fl | O_NONBLOCK) == 0;
	size_t sent = 0;
	int err = 0;
	size_t in_pipe = 0;
	size_t checked_end = 0; /* [.., checked_end) of the range was cached */
	while (sent < len && !err) {
		size_t want = len - sent;
		if (flipped || (fl >= 0 && (fl & O_NONBLOCK))) {
			/* A range seen cached is not checked again while the
			 * socket drains it (cachestat walks every page). */
			size_t d = want < DIRECT_CHUNK ? want : DIRECT_CHUNK;
			if (sent >= checked_end && cached(in_fd, off + (int64_t)sent, d))
				checked_end = sent + d;
			if (sent < checked_end) {
				d = checked_end - sent;
				off_t o = (off_t)(off + (int64_t)sent);
				ssize_t n = sendfile(out_sock, in_fd, &o, d);
				if (n > 0) {
					sent += (size_t)n;
					continue;
				}
				if (n == 0) {
					err = 0; /* the file ended early */
					break;
				}
				if (errno == EAGAIN) {
					t->next_timeout_ns = timeout;
					r = zk_poll(out_sock, POLLOUT);
					if (r < 0)
						err = r;
					continue;
				}
				if (errno != EINVAL && errno != ENOSYS) {
					err = -errno;
					break;
				}
				/* EINVAL/ENOSYS: a file sendfile cannot read
				 * (e.g. some special files): splice instead. */
			}
		}
		if (!have_pipe) {
			r = pipe_get(&p);
			if (r < 0) {
				err = r;
				break;
			}
			have_pipe = true;
		}
		if (want > (size_t)p.size)
			want = (size_t)p.size;
		r = splice_op(t, timeout, p.wr, in_fd, off + (int64_t)sent, want, SPLICE_F_MOVE);
		if (r <= 0) {
			err = r; /* 0: the file ended early */
			break;
		}
		in_pipe = (size_t)r;
		while (in_pipe) {
			bool more = sent + in_pipe < len;
			r = splice_op(t, timeout, out_sock, p.rd, -1, in_pipe,
				      SPLICE_F_MOVE | (more ? SPLICE_F_MORE : 0));
			if (r == -EAGAIN) {
				/* The socket is full: wait on the ring for room. */
				t->next_timeout_ns = timeout;
				r = zk_poll(out_sock, POLLOUT);
				if (r < 0) {
					err = r;
					break;
				}
				continue;
			}
			if (r <= 0) {
				err = r < 0 ? r : -EPIPE;
				break;
			}
			in_pipe -= (size_t)r;
			sent += (size_t)r;
		}
	}
	if (flipped)
		fcntl(out_sock, F_SETFL, fl);
	if (have_pipe)
		pipe_put(&p, in_pipe == 0);
	if (sent == 0 && err < 0)
		return err;
	return (ssize_t)sent;
}
