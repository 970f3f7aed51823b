/* zokio/sync.h — synchronisation between tasks that suspends, never spins.
 *
 * For now: a oneshot channel (one value, one sender, one receiver). */
#ifndef ZOKIO_SYNC_H
#define ZOKIO_SYNC_H

#include <stdatomic.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A oneshot channel. Caller-owned: put it anywhere both sides can reach
 * (the receiver's stack is typical) and initialise it with zk_oneshot_init.
 * The fields are private. */
typedef struct zk_oneshot {
	_Atomic uintptr_t state; /* private */
	void *value;             /* private */
} zk_oneshot_t;

/* Prepares o for one send and one receive. */
void zk_oneshot_init(zk_oneshot_t *o);

/* Stores value and wakes the receiver. Never suspends; callable from any
 * thread, task or not, by one sender (two concurrent senders are a bug).
 * Returns 0, -EINVAL (o NULL), or -EALREADY (a value was already sent or
 * the channel was closed). */
int zk_oneshot_send(zk_oneshot_t *o, void *value);

/* Closes the sending side without a value: the receiver gets -EPIPE.
 * Returns 0, -EINVAL, or -EALREADY (already sent or closed). */
int zk_oneshot_close(zk_oneshot_t *o);

/* Suspends the calling task until a value is sent (stored in *value if value
 * is not NULL); returns at once if it already was. Returns 0, or
 *   -EPIPE     closed without a value,
 *   -ECANCELED the task was cancelled; the receive is withdrawn and nothing
 *              is lost: a value sent later can still be received,
 *   -EBUSY     another task is already receiving,
 *   -EINVAL    o is NULL,
 *   -EPERM     outside a runtime task. */
int zk_oneshot_recv(zk_oneshot_t *o, void **value);

#ifdef __cplusplus
}
#endif
#endif
