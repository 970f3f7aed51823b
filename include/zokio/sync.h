/* zokio/sync.h — synchronisation between tasks that suspends, never spins.
 *
 * Channels: oneshot (one value), MPSC (bounded or unbounded, many senders,
 * one receiver), broadcast (every receiver sees every message) and watch
 * (the latest value). Locks and signals: async mutex, rwlock, counting
 * semaphore, notify, barrier, once-cell. Messages are void * values.
 *
 * Rules shared by every call below (each contract only adds its own):
 *
 * Suspending calls (receive, a send on a full bounded channel, lock,
 * acquire, wait) suspend the calling task; its worker runs other tasks
 * meanwhile, and the task resumes when the other side acts. Called from a
 * thread that is not a runtime worker (a "foreign" thread: a storage
 * engine's own threads, the main thread), they block that thread instead
 * (it cannot be cancelled; timeouts apply). Called on a worker thread but
 * outside a task they return -EPERM.
 *
 * Cancellation (zk_cancel): a task suspended in any of these calls wakes at
 * once with -ECANCELED, and a cancelled task gets -ECANCELED from them
 * without suspending. A call that returns -ECANCELED or -ETIMEDOUT has not
 * performed its operation: a receive took no message (the message stays for
 * the next receive), a send sent nothing, an acquire holds no permit, a wait
 * consumed no notification. They are all cancel-safe in that sense. A call
 * that completed its operation reports success even if a cancel arrived at
 * the same moment (the task sees the cancel at its next suspending call).
 *
 * Timeouts: the *_timeout variants take a relative timeout in nanoseconds
 * and return -ETIMEDOUT when it passes first. 0 means "do not wait" (like
 * try_, but reporting -ETIMEDOUT); ZK_FOREVER means no timeout. Deadlines
 * live on the worker's timer wheel (1 ms ticks): never early, about a tick
 * late at most on an idle worker.
 *
 * Non-suspending calls (try_ variants, unbounded sends, broadcast and watch
 * sends, notify, unlock, release, close) may be called from any thread.
 *
 * Objects are owned by the caller: nothing may be waiting on one when it is
 * destroyed or freed. */
#ifndef ZOKIO_SYNC_H
#define ZOKIO_SYNC_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* No timeout, for the *_timeout variants. */
#define ZK_FOREVER UINT64_MAX

/* Private: a FIFO of waiting tasks (lib/waitq.h). */
struct zk__waiter;
struct zk__waitq {
	struct zk__waiter *head, *tail;
};

/* ==== oneshot ============================================================= */

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

/* ==== MPSC channel ========================================================= */

/* A multi-producer, single-consumer FIFO of void * messages. Any number of
 * tasks and foreign threads may send at once; messages from one sender are
 * received in the order it sent them. One receiver at a time: a second
 * receiver that tries to *wait* while one already waits gets -EBUSY;
 * concurrent non-waiting receives (try_recv from two threads at once) are a
 * bug that is not detected.
 *
 * Bounded (capacity > 0): a lock-free array queue; send and receive of a
 * message cost one compare-and-swap and no lock unless the other side is
 * waiting. Unbounded (capacity 0): a growing ring under a mutex; sends never
 * wait.
 *
 * Close (by either side, or when the last registered sender drops): sends
 * fail with -EPIPE from then on; the receiver still gets every message sent
 * before the close, then -EPIPE. Waiting senders wake with -EPIPE. */
typedef struct zk_chan zk_chan_t;

/* Creates a channel; capacity 0 makes it unbounded. Returns 0 and stores it
 * in *out, or -EINVAL (out NULL, capacity > 2^40), -ENOMEM. */
int zk_chan_create(zk_chan_t **out, size_t capacity);

/* Frees ch and any messages still in it (the void * values themselves are
 * the caller's). ch may be NULL. No call on ch may be in progress. */
void zk_chan_free(zk_chan_t *ch);

/* Sends value, waiting while a bounded channel is full. From a foreign
 * thread a full channel blocks that thread until there is room or the
 * channel is closed (shutting the runtime down does not release it; use
 * zk_chan_try_send to never block it). Returns 0, or -EPIPE (closed, before
 * or during the wait; nothing was sent), -ECANCELED, -EINVAL (ch NULL),
 * -ENOMEM (unbounded ring could not grow), -EPERM. */
int zk_chan_send(zk_chan_t *ch, void *value);

/* zk_chan_send giving up after timeout_ns: also -ETIMEDOUT (not sent). */
int zk_chan_send_timeout(zk_chan_t *ch, void *value, uint64_t timeout_ns);

/* Sends value if there is room now. Never waits; any thread. Returns 0,
 * -EAGAIN (bounded channel full), -EPIPE (closed), -EINVAL, -ENOMEM. */
int zk_chan_try_send(zk_chan_t *ch, void *value);

/* Receives the oldest message into *value (value may be NULL to drop it),
 * waiting while the channel is empty. Returns 0, or
 *   -EPIPE     closed and every message sent before the close received,
 *   -ECANCELED cancelled (no message was taken),
 *   -EBUSY     another receiver is waiting on ch,
 *   -EINVAL    ch NULL, -EPERM. */
int zk_chan_recv(zk_chan_t *ch, void **value);

/* zk_chan_recv giving up after timeout_ns: also -ETIMEDOUT (nothing taken). */
int zk_chan_recv_timeout(zk_chan_t *ch, void **value, uint64_t timeout_ns);

/* Receives a message if one is there now. Never waits; any thread (but one
 * receiver at a time). Returns 0, -EAGAIN (empty), -EPIPE (closed and
 * drained), -EINVAL. */
int zk_chan_try_recv(zk_chan_t *ch, void **value);

/* Batch receive: waits until at least one message is there, then takes up
 * to max messages at once into buf[0..]. Returns the number taken (1..max,
 * at most INT32_MAX), or the errors of zk_chan_recv (-EINVAL also for buf
 * NULL or max 0). */
int zk_chan_recv_many(zk_chan_t *ch, void **buf, size_t max);

/* zk_chan_recv_many giving up after timeout_ns: also -ETIMEDOUT. */
int zk_chan_recv_many_timeout(zk_chan_t *ch, void **buf, size_t max, uint64_t timeout_ns);

/* Takes up to max messages that are there now. Returns the number taken
 * (>= 1), -EAGAIN (empty), -EPIPE (closed and drained), -EINVAL. */
int zk_chan_try_recv_many(zk_chan_t *ch, void **buf, size_t max);

/* Closes ch (see above). Any thread. Returns 0, -EALREADY (already
 * closed), -EINVAL. */
int zk_chan_close(zk_chan_t *ch);

/* Sender counting, optional: each zk_chan_sender_add registers one sender;
 * when zk_chan_sender_drop has been called as many times, the channel
 * closes, so the receiver learns that every producer is done. Any thread.
 * Return 0 or -EINVAL (ch NULL; drop without a matching add). */
int zk_chan_sender_add(zk_chan_t *ch);
int zk_chan_sender_drop(zk_chan_t *ch);

/* Messages in ch now (a snapshot), its capacity (0: unbounded), and whether
 * it is closed. 0/false for a NULL ch. */
size_t zk_chan_len(zk_chan_t *ch);
size_t zk_chan_capacity(const zk_chan_t *ch);
bool zk_chan_is_closed(zk_chan_t *ch);

/* ==== broadcast channel =================================================== */

/* Every subscribed receiver sees every message sent after it subscribed. The
 * channel keeps the last `capacity` messages; a receiver that falls further
 * behind loses the oldest ones and is told how many (-EOVERFLOW), then
 * continues from the oldest message still kept. Sends never wait. */
typedef struct zk_bcast zk_bcast_t;

/* A receiver's cursor. Caller-owned; one task at a time uses it. */
typedef struct zk_bcast_rx {
	zk_bcast_t *b;  /* private */
	uint64_t next;  /* private: position of the next message */
} zk_bcast_rx_t;

/* Creates a broadcast channel keeping capacity (>= 1) messages. Returns 0,
 * -EINVAL (out NULL, capacity 0 or > 2^32), -ENOMEM. */
int zk_bcast_create(zk_bcast_t **out, size_t capacity);

/* Frees b. No receive may be in progress. b may be NULL. */
void zk_bcast_free(zk_bcast_t *b);

/* Sends value to every subscriber. Never waits; any thread. Returns the
 * number of subscribed receivers (0 is not an error: the value is kept for
 * no one), -EPIPE (closed), -EINVAL. */
int zk_bcast_send(zk_bcast_t *b, void *value);

/* Subscribes rx: it will receive messages sent from now on. Any thread.
 * Returns 0, -EINVAL. */
int zk_bcast_subscribe(zk_bcast_t *b, zk_bcast_rx_t *rx);

/* Ends rx's subscription (only the subscriber count changes). Returns 0,
 * -EINVAL. */
int zk_bcast_unsubscribe(zk_bcast_rx_t *rx);

/* Receives rx's next message into *value (value may be NULL). Returns 0, or
 *   -EOVERFLOW rx fell behind: *missed (if missed is not NULL) is set to the
 *              number of messages it lost; the next call returns the oldest
 *              message still kept,
 *   -EPIPE     closed and rx has received everything sent before the close,
 *   -ECANCELED, -EINVAL, -EPERM. */
int zk_bcast_recv(zk_bcast_rx_t *rx, void **value, uint64_t *missed);

/* zk_bcast_recv giving up after timeout_ns: also -ETIMEDOUT. */
int zk_bcast_recv_timeout(zk_bcast_rx_t *rx, void **value, uint64_t *missed,
			  uint64_t timeout_ns);

/* Non-waiting zk_bcast_recv: -EAGAIN when nothing new. */
int zk_bcast_try_recv(zk_bcast_rx_t *rx, void **value, uint64_t *missed);

/* Closes b: sends fail with -EPIPE; receivers drain then get -EPIPE.
 * Returns 0, -EALREADY, -EINVAL. */
int zk_bcast_close(zk_bcast_t *b);

/* ==== watch channel ======================================================= */

/* A single value that changes; receivers wait for "a value newer than the
 * last I saw" and always get the latest (intermediate values may be
 * skipped). Sends never wait. */
typedef struct zk_watch zk_watch_t;

/* A receiver's cursor: the version it saw last. Caller-owned. */
typedef struct zk_watch_rx {
	zk_watch_t *w;  /* private */
	uint64_t seen;  /* private */
} zk_watch_rx_t;

/* Creates a watch holding initial. Returns 0, -EINVAL, -ENOMEM. */
int zk_watch_create(zk_watch_t **out, void *initial);

/* Frees w. No receive may be in progress. w may be NULL. */
void zk_watch_free(zk_watch_t *w);

/* Replaces the value and wakes every waiting receiver. Any thread. Returns
 * 0, -EPIPE (closed), -EINVAL. */
int zk_watch_send(zk_watch_t *w, void *value);

/* The current value and its version (versions start at 0 and grow by one
 * per send). version may be NULL. Any thread. NULL for a NULL w. */
void *zk_watch_get(zk_watch_t *w, uint64_t *version);

/* Subscribes rx; the current value counts as seen. Returns 0, -EINVAL. */
int zk_watch_subscribe(zk_watch_t *w, zk_watch_rx_t *rx);

/* Waits until the value is newer than the last one rx saw, then stores the
 * latest in *value (value may be NULL) and marks it seen. Returns 0, or
 * -EPIPE (closed and rx has seen the last value), -ECANCELED, -EINVAL,
 * -EPERM. */
int zk_watch_changed(zk_watch_rx_t *rx, void **value);

/* zk_watch_changed giving up after timeout_ns: also -ETIMEDOUT. */
int zk_watch_changed_timeout(zk_watch_rx_t *rx, void **value, uint64_t timeout_ns);

/* Closes w: sends fail with -EPIPE; waiting receivers wake with -EPIPE once
 * they have seen the last value. Returns 0, -EALREADY, -EINVAL. */
int zk_watch_close(zk_watch_t *w);

/* ==== mutex ================================================================ */

/* An async mutex. Waiters queue in FIFO order and an unlock hands the lock
 * straight to the first waiter (no thundering herd, no barging while tasks
 * wait). Uncontended lock/unlock is one compare-and-swap each. It may be
 * held across suspending calls. Not recursive. Fields private. */
typedef struct zk_mutex {
	_Atomic uint32_t state;
	pthread_mutex_t lock;
	struct zk__waitq waiters;
} zk_mutex_t;

#define ZK_MUTEX_INITIALIZER {0, PTHREAD_MUTEX_INITIALIZER, {NULL, NULL}}

/* Returns 0 or -EINVAL (m NULL). */
int zk_mutex_init(zk_mutex_t *m);

/* Returns 0, -EINVAL, or -EBUSY (locked: nothing is destroyed). */
int zk_mutex_destroy(zk_mutex_t *m);

/* Locks m, waiting (FIFO) while another holder has it. Returns 0,
 * -ECANCELED (not locked), -EINVAL, -EPERM. */
int zk_mutex_lock(zk_mutex_t *m);

/* zk_mutex_lock giving up after timeout_ns: also -ETIMEDOUT (not locked). */
int zk_mutex_lock_timeout(zk_mutex_t *m, uint64_t timeout_ns);

/* Locks m if it is free and nobody waits. Any thread. Returns 0, -EBUSY,
 * -EINVAL. */
int zk_mutex_trylock(zk_mutex_t *m);

/* Unlocks m, handing it to the first waiter if any. Any thread (the holder
 * is not recorded: unlocking on behalf of another is allowed). Returns 0,
 * -EPERM (m is not locked), -EINVAL. */
int zk_mutex_unlock(zk_mutex_t *m);

/* ==== counting semaphore =================================================== */

/* Permits taken n at a time in strict FIFO order: a large request at the
 * head of the queue is not overtaken by later small ones. Uncontended
 * acquire/release is one compare-and-swap. Fields private. */
typedef struct zk_sem {
	_Atomic uint64_t state; /* permits << 2 | CLOSED | WAITERS */
	pthread_mutex_t lock;
	struct zk__waitq waiters;
} zk_sem_t;

/* Largest permit count a semaphore can hold. */
#define ZK_SEM_MAX_PERMITS (UINT64_MAX >> 2)
#define ZK_SEM_INITIALIZER(permits) \
	{(uint64_t)(permits) << 2, PTHREAD_MUTEX_INITIALIZER, {NULL, NULL}}

/* Returns 0, -EINVAL (s NULL or permits > ZK_SEM_MAX_PERMITS). */
int zk_sem_init(zk_sem_t *s, uint64_t permits);

/* Returns 0, -EINVAL, -EBUSY (tasks are waiting). */
int zk_sem_destroy(zk_sem_t *s);

/* Takes n permits, waiting (FIFO) until they are available. n == 0 returns
 * 0 at once. Returns 0, -EPIPE (closed), -ECANCELED (no permit taken),
 * -EINVAL (s NULL, n > ZK_SEM_MAX_PERMITS), -EPERM. */
int zk_sem_acquire(zk_sem_t *s, uint64_t n);

/* zk_sem_acquire giving up after timeout_ns: also -ETIMEDOUT. */
int zk_sem_acquire_timeout(zk_sem_t *s, uint64_t n, uint64_t timeout_ns);

/* Takes n permits if available now and nobody waits. Any thread. Returns 0,
 * -EAGAIN, -EPIPE, -EINVAL. */
int zk_sem_try_acquire(zk_sem_t *s, uint64_t n);

/* Adds n permits, handing them to waiters in FIFO order. Any thread.
 * Returns 0, -EINVAL, -EOVERFLOW (the count would exceed
 * ZK_SEM_MAX_PERMITS; nothing added). Releasing into a closed semaphore is
 * allowed (the permits are kept, nobody can take them). */
int zk_sem_release(zk_sem_t *s, uint64_t n);

/* Permits available now (a snapshot). */
uint64_t zk_sem_available(zk_sem_t *s);

/* Closes s: waiting and later acquires fail with -EPIPE. Any thread.
 * Returns 0, -EALREADY, -EINVAL. */
int zk_sem_close(zk_sem_t *s);

/* ==== rwlock ================================================================ */

/* Many readers or one writer, fair: requests are served in FIFO order, so a
 * waiting writer is not starved by a stream of readers (readers that arrive
 * after it wait). Built on a semaphore of ZK_RWLOCK_MAX_READERS permits. */
typedef struct zk_rwlock {
	zk_sem_t sem; /* private */
} zk_rwlock_t;

#define ZK_RWLOCK_MAX_READERS (1ull << 30)
#define ZK_RWLOCK_INITIALIZER {ZK_SEM_INITIALIZER(ZK_RWLOCK_MAX_READERS)}

/* Returns 0, -EINVAL. */
int zk_rwlock_init(zk_rwlock_t *l);
/* Returns 0, -EINVAL, -EBUSY (held or waited on). */
int zk_rwlock_destroy(zk_rwlock_t *l);

/* Shared lock (waits while a writer holds it or waits before us, or when
 * ZK_RWLOCK_MAX_READERS readers hold it). Returns 0, -ECANCELED, -EINVAL,
 * -EPERM. */
int zk_rwlock_rdlock(zk_rwlock_t *l);
int zk_rwlock_rdlock_timeout(zk_rwlock_t *l, uint64_t timeout_ns);
/* Returns 0, -EBUSY, -EINVAL. Any thread. */
int zk_rwlock_tryrdlock(zk_rwlock_t *l);

/* Exclusive lock. Returns 0, -ECANCELED, -EINVAL, -EPERM. */
int zk_rwlock_wrlock(zk_rwlock_t *l);
int zk_rwlock_wrlock_timeout(zk_rwlock_t *l, uint64_t timeout_ns);
/* Returns 0, -EBUSY, -EINVAL. Any thread. */
int zk_rwlock_trywrlock(zk_rwlock_t *l);

/* Release a shared / the exclusive lock. Any thread. Returns 0, -EINVAL,
 * -EPERM (not held that way, as far as can be told). */
int zk_rwlock_rdunlock(zk_rwlock_t *l);
int zk_rwlock_wrunlock(zk_rwlock_t *l);

/* ==== notify ================================================================ */

/* Wakes waiting tasks, like Tokio's Notify. zk_notify_one wakes one waiter,
 * or, if none waits, stores a single permit that the next zk_notify_wait
 * consumes at once: a notification that precedes the wait is not lost.
 * Permits do not add up (two notify_one with nobody waiting store one).
 * Fields private. */
typedef struct zk_notify {
	_Atomic uint32_t state;
	pthread_mutex_t lock;
	struct zk__waitq waiters;
} zk_notify_t;

#define ZK_NOTIFY_INITIALIZER {0, PTHREAD_MUTEX_INITIALIZER, {NULL, NULL}}

/* Returns 0, -EINVAL. */
int zk_notify_init(zk_notify_t *n);
/* Returns 0, -EINVAL, -EBUSY (tasks are waiting). */
int zk_notify_destroy(zk_notify_t *n);

/* Wakes the longest-waiting task, or stores the permit. Never waits; any
 * thread. Returns 0, -EINVAL. */
int zk_notify_one(zk_notify_t *n);

/* Wakes every task waiting now; stores no permit (a later wait waits).
 * Never waits; any thread. Returns the number woken, or -EINVAL. */
int zk_notify_all(zk_notify_t *n);

/* Consumes the stored permit, or waits for zk_notify_one/zk_notify_all.
 * Returns 0, -ECANCELED (no notification consumed), -EINVAL, -EPERM. */
int zk_notify_wait(zk_notify_t *n);

/* zk_notify_wait giving up after timeout_ns: also -ETIMEDOUT. */
int zk_notify_wait_timeout(zk_notify_t *n, uint64_t timeout_ns);

/* ==== barrier =============================================================== */

/* count tasks meet: each zk_barrier_wait waits until count of them have
 * arrived, then all go on and the barrier is ready for the next round.
 * Fields private. */
typedef struct zk_barrier {
	pthread_mutex_t lock;
	unsigned count;
	unsigned arrived;
	uint64_t generation;
	struct zk__waitq waiters;
} zk_barrier_t;

/* Returned to exactly one task per round (the last to arrive). */
#define ZK_BARRIER_LEADER 1

/* Returns 0, -EINVAL (b NULL or count 0). */
int zk_barrier_init(zk_barrier_t *b, unsigned count);
/* Returns 0, -EINVAL, -EBUSY (tasks are waiting). */
int zk_barrier_destroy(zk_barrier_t *b);

/* Arrives and waits for the round to fill. Returns ZK_BARRIER_LEADER or 0,
 * or -ECANCELED / -ETIMEDOUT (the arrival is withdrawn: the round still
 * needs count arrivals), -EINVAL, -EPERM. */
int zk_barrier_wait(zk_barrier_t *b);
int zk_barrier_wait_timeout(zk_barrier_t *b, uint64_t timeout_ns);

/* ==== once-cell ============================================================= */

/* A value initialised once, lazily, by the first caller; concurrent callers
 * wait for that initialisation instead of running their own. Fields
 * private. */
typedef struct zk_once {
	_Atomic uint32_t state;
	void *value;
	pthread_mutex_t lock;
	struct zk__waitq waiters;
} zk_once_t;

#define ZK_ONCE_INITIALIZER {0, NULL, PTHREAD_MUTEX_INITIALIZER, {NULL, NULL}}

/* Initialiser: stores the value in *value and returns 0, or returns a
 * negative errno (the cell stays empty). It may suspend. */
typedef int (*zk_once_fn)(void *arg, void **value);

/* Returns 0, -EINVAL. */
int zk_once_init(zk_once_t *o);
/* Returns 0, -EINVAL, -EBUSY (being initialised or waited on). */
int zk_once_destroy(zk_once_t *o);

/* If o holds a value, stores it in *value (may be NULL) and returns 0 at
 * once. Otherwise the first caller runs init(arg, &v) in its own task: on
 * success v becomes the value for everyone; on failure its error is
 * returned to that caller and the next waiter runs its own init. Callers
 * arriving meanwhile wait. Returns 0, init's error, -ECANCELED (a waiter
 * was cancelled; an init that was cancelled returns what init returned),
 * -EINVAL, -EPERM. */
int zk_once_get_or_init(zk_once_t *o, zk_once_fn init, void *arg, void **value);

/* Non-waiting: true and *value (if not NULL) when o holds a value. */
bool zk_once_get(zk_once_t *o, void **value);

#ifdef __cplusplus
}
#endif
#endif
