/* lib/fiber.h — the fiber primitive: prepare a stack, switch between stacks,
 * and tell the sanitizers about every switch.
 *
 * The switch itself is in fiber_<arch>.S. ASan must be told before and after
 * each switch which stack becomes current (__sanitizer_start/finish_switch_
 * fiber), or it reports the task's stack frames as stack-buffer-overflows of
 * the worker's stack; TSan needs a fiber object per task so that it keeps a
 * separate shadow call stack and vector clock for each. */
#ifndef ZOKIO_FIBER_H
#define ZOKIO_FIBER_H

#include <stddef.h>
#include <stdint.h>

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ZK_ASAN 1
#endif
#if __has_feature(thread_sanitizer)
#define ZK_TSAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) && !defined(ZK_ASAN)
#define ZK_ASAN 1
#endif
#if defined(__SANITIZE_THREAD__) && !defined(ZK_TSAN)
#define ZK_TSAN 1
#endif

#ifdef ZK_ASAN
void __sanitizer_start_switch_fiber(void **fake_stack_save, const void *bottom, size_t size);
void __sanitizer_finish_switch_fiber(void *fake_stack_save, const void **bottom_old,
				     size_t *size_old);
#endif
#ifdef ZK_TSAN
void *__tsan_get_current_fiber(void);
void *__tsan_create_fiber(unsigned flags);
void __tsan_destroy_fiber(void *fiber);
void __tsan_switch_to_fiber(void *fiber, unsigned flags);
#endif

/* Saves the current context's registers and stack pointer in *save_sp and
 * resumes the context whose stack pointer is load_sp. */
void zk__fiber_switch(void **save_sp, void *load_sp);
void zk__fiber_boot(void);

/* Prepares a stack whose highest usable address is top so that the first
 * switch to the returned stack pointer calls entry(arg) on it. entry must
 * never return (it switches away for the last time instead). */
#ifdef _WIN32
/* Windows x64 (fiber_win64.S): as zk__fiber_init, but the stack's lowest
 * usable address lo is needed too, because the switch loads the TEB's
 * StackBase/StackLimit/DeallocationStack from the frame. */
static inline void *zk__fiber_init_win(void *lo, void *top, void (*entry)(void *), void *arg)
{
	uintptr_t t = (uintptr_t)top & ~(uintptr_t)15;
	/* Frame popped by zk__fiber_switch (layout in fiber_win64.S): 256
	 * bytes, then two zero words that end stack walks. After the ret,
	 * rsp = sp + 256 = t - 16 is 16-byte aligned, as zk__fiber_boot needs. */
	uintptr_t *sp = (uintptr_t *)(t - 272);
	for (int i = 0; i < 34; i++)
		sp[i] = 0;
	sp[20] = (uintptr_t)lo;      /* DeallocationStack */
	sp[21] = (uintptr_t)lo;      /* StackLimit */
	sp[22] = t;                  /* StackBase */
	sp[25] = (uintptr_t)entry;   /* r13 */
	sp[26] = (uintptr_t)arg;     /* r12 */
	sp[31] = (uintptr_t)zk__fiber_boot;
	return sp;
}
#else
static inline void *zk__fiber_init(void *top, void (*entry)(void *), void *arg)
{
	uintptr_t t = (uintptr_t)top & ~(uintptr_t)15;
#if defined(__x86_64__)
	/* Frame popped by zk__fiber_switch: r15 r14 r13 r12 rbx rbp, then the
	 * return address. After the pops and ret, rsp = sp + 56 must be 16-byte
	 * aligned so that zk__fiber_boot's call leaves the ABI's alignment. */
	uintptr_t *sp = (uintptr_t *)(t - 72);
	sp[0] = 0;                   /* r15 */
	sp[1] = 0;                   /* r14 */
	sp[2] = (uintptr_t)entry;    /* r13 */
	sp[3] = (uintptr_t)arg;      /* r12 */
	sp[4] = 0;                   /* rbx */
	sp[5] = 0;                   /* rbp: ends frame-pointer walks */
	sp[6] = (uintptr_t)zk__fiber_boot;
	sp[7] = 0;
	sp[8] = 0;
	return sp;
#elif defined(__aarch64__)
	uintptr_t *sp = (uintptr_t *)(t - 176);
	for (int i = 0; i < 22; i++)
		sp[i] = 0;
	sp[0] = (uintptr_t)arg;      /* x19 */
	sp[1] = (uintptr_t)entry;    /* x20 */
	sp[11] = (uintptr_t)zk__fiber_boot; /* x30 */
	return sp;
#else
#error "Zokio fibers support x86_64 and aarch64"
#endif
}
#endif /* _WIN32 */

#endif
