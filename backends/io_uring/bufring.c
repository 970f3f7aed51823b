/* backends/io_uring/bufring.c — the provided-buffer ring of one io_uring.
 *
 * ZK__PBUF_COUNT buffers of ZK__PBUF_SIZE bytes, registered as buffer group
 * ZK__PBUF_GROUP (io_uring_register_buf_ring, kernel 5.19+). A RECV_PBUF op
 * lets the kernel pick a buffer only when data arrives, so a connection
 * waiting for data holds none: 100 000 idle connections cost no receive
 * memory. The completion's flags carry the buffer id; the receiver reads
 * the data in place and gives the buffer back with zk__pbuf_put(), from
 * any thread: adding to the ring is two stores and a release of the tail,
 * done under a mutex so that two returning threads do not race for a slot
 * (the kernel is the only consumer and takes no lock).
 *
 * When every buffer is out, a buffer-select recv completes with -ENOBUFS
 * and the multishot ends; no data is lost (it stays in the socket) and the
 * receiver re-arms once buffers come back (lib/net_stream.c). */
#include "bufring.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

int zk__pbuf_setup(struct zk__pbuf *p, struct io_uring *ring)
{
	if (p->state)
		return p->state > 0 ? 0 : p->state;
	p->br_bytes = ZK__PBUF_COUNT * sizeof(struct io_uring_buf);
	/* The ring must be page aligned: an anonymous mapping is. */
	void *br = mmap(NULL, p->br_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (br == MAP_FAILED) {
		p->state = -ENOMEM;
		return p->state;
	}
	p->mem = malloc((size_t)ZK__PBUF_COUNT * ZK__PBUF_SIZE);
	if (!p->mem) {
		munmap(br, p->br_bytes);
		p->state = -ENOMEM;
		return p->state;
	}
	p->br = br;
	io_uring_buf_ring_init(p->br);
	struct io_uring_buf_reg reg;
	memset(&reg, 0, sizeof(reg));
	reg.ring_addr = (uint64_t)(uintptr_t)p->br;
	reg.ring_entries = ZK__PBUF_COUNT;
	reg.bgid = ZK__PBUF_GROUP;
	int r = io_uring_register_buf_ring(ring, &reg, 0);
	if (r < 0) {
		munmap(p->br, p->br_bytes);
		free(p->mem);
		p->br = NULL;
		p->mem = NULL;
		p->state = r;
		return r;
	}
	int mask = io_uring_buf_ring_mask(ZK__PBUF_COUNT);
	for (unsigned i = 0; i < ZK__PBUF_COUNT; i++)
		io_uring_buf_ring_add(p->br, p->mem + (size_t)i * ZK__PBUF_SIZE, ZK__PBUF_SIZE,
				      (unsigned short)i, mask, (int)i);
	io_uring_buf_ring_advance(p->br, (int)ZK__PBUF_COUNT);
	pthread_mutex_init(&p->lock, NULL);
	p->state = 1;
	return 0;
}

void *zk__pbuf_data(struct zk__pbuf *p, uint32_t cflags)
{
	if (p->state <= 0 || !(cflags & IORING_CQE_F_BUFFER))
		return NULL;
	unsigned bid = cflags >> IORING_CQE_BUFFER_SHIFT;
	return bid < ZK__PBUF_COUNT ? p->mem + (size_t)bid * ZK__PBUF_SIZE : NULL;
}

void zk__pbuf_put(struct zk__pbuf *p, uint32_t cflags)
{
	if (p->state <= 0 || !(cflags & IORING_CQE_F_BUFFER))
		return;
	unsigned bid = cflags >> IORING_CQE_BUFFER_SHIFT;
	if (bid >= ZK__PBUF_COUNT)
		return;
	pthread_mutex_lock(&p->lock);
	io_uring_buf_ring_add(p->br, p->mem + (size_t)bid * ZK__PBUF_SIZE, ZK__PBUF_SIZE,
			      (unsigned short)bid, io_uring_buf_ring_mask(ZK__PBUF_COUNT), 0);
	io_uring_buf_ring_advance(p->br, 1);
	pthread_mutex_unlock(&p->lock);
}

void zk__pbuf_fini(struct zk__pbuf *p, struct io_uring *ring)
{
	if (p->state <= 0)
		return;
	io_uring_unregister_buf_ring(ring, ZK__PBUF_GROUP);
	munmap(p->br, p->br_bytes);
	free(p->mem);
	pthread_mutex_destroy(&p->lock);
	p->state = 0;
}
