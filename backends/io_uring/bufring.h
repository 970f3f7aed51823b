/* backends/io_uring/bufring.h — one provided-buffer ring per io_uring
 * (see bufring.c). */
#ifndef ZOKIO_BUFRING_H
#define ZOKIO_BUFRING_H

#include <liburing.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

/* The group id every ring uses for its one buffer ring. */
#define ZK__PBUF_GROUP 0
/* Buffers per ring and their size: 256 x 16 KiB = 4 MiB per worker, shared
 * by every connection receiving on that worker's ring. */
#define ZK__PBUF_COUNT 256u
#define ZK__PBUF_SIZE 16384u

struct zk__pbuf {
	struct io_uring_buf_ring *br; /* shared with the kernel */
	char *mem;                    /* ZK__PBUF_COUNT buffers */
	size_t br_bytes;
	int state;                    /* 0 not tried, 1 registered, -errno failed */
	pthread_mutex_t lock;         /* producers: returns come from any thread */
};

/* Registers the ring's buffers (kernel 5.19+). Returns 0 or -errno
 * (-EINVAL/-ENOSYS: not supported by this kernel, -ENOMEM). Once. */
int zk__pbuf_setup(struct zk__pbuf *p, struct io_uring *ring);
/* The buffer a completion's flags name, or NULL if they name none. */
void *zk__pbuf_data(struct zk__pbuf *p, uint32_t cflags);
/* Gives the buffer back to the kernel. Any thread. */
void zk__pbuf_put(struct zk__pbuf *p, uint32_t cflags);
/* Unregisters and frees (the ring's owner, at fini). */
void zk__pbuf_fini(struct zk__pbuf *p, struct io_uring *ring);

#endif
