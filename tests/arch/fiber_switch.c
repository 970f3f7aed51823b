/* tests/arch/fiber_switch.c — the hand-written context switch, on its own.
 *
 * Built natively as a meson test, and cross-built for aarch64 and run under
 * qemu-user by tests/arch/run_aarch64.sh, so the aarch64 switch is tested on
 * this x86_64 machine. No liburing, no runtime: just fiber.h and the .S file.
 * Checks that values live in callee-saved integer and floating-point
 * registers survive switches in both directions, that a fiber's stack is
 * 16-byte aligned at function entry (SSE/NEON spills and printf of doubles
 * would fault or corrupt otherwise), and that many fibers interleave
 * correctly. Exit status 0 on success; prints what failed otherwise. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../lib/fiber.h"

#define NFIBERS 8
#define ROUNDS 1000
#define STACK_SIZE (64 * 1024)

static void *main_sp;
static void *fiber_sp[NFIBERS];
static int failures;
static volatile int current;

#define CHECK(cond)                                                                  \
	do {                                                                         \
		if (!(cond)) {                                                       \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, \
				#cond);                                              \
			failures++;                                                  \
		}                                                                    \
	} while (0)

/* noinline so the compiler cannot fold the values into constants. */
__attribute__((noinline)) static double mix(double a, long b)
{
	return a * 1.5 + (double)b;
}

__attribute__((noinline)) static void check_alignment(void)
{
	/* At function entry the ABI guarantees a 16-byte aligned frame: a
	 * 16-aligned local proves the fiber's initial stack was set up right. */
	_Alignas(16) char probe[16];
	CHECK(((uintptr_t)probe & 15) == 0);
	char buf[64];
	snprintf(buf, sizeof(buf), "%.3f", mix(1.25, 2));
	CHECK(strcmp(buf, "3.875") == 0);
}

static void fiber_main(void *arg)
{
	long id = (long)(intptr_t)arg;
	check_alignment();
	/* Many live values across the switch: the compiler keeps some in
	 * callee-saved registers (rbx, r12-r15 / x19-x28, d8-d15). */
	long a = id * 3, b = id * 5, c = id * 7, d = id * 11, e = id * 13, f = id * 17;
	double x = (double)id * 0.5, y = (double)id * 0.25, z = (double)id * 0.125;
	for (int r = 0; r < ROUNDS; r++) {
		zk__fiber_switch(&fiber_sp[id], main_sp);
		CHECK(current == id);
		a += 1, b += 2, c += 3, d += 4, e += 5, f += 6;
		x = mix(x, 1), y = mix(y, 2), z = mix(z, 3);
		x /= 1.5, y /= 1.5, z /= 1.5;
	}
	CHECK(a == id * 3 + ROUNDS && b == id * 5 + 2 * ROUNDS && c == id * 7 + 3 * ROUNDS);
	CHECK(d == id * 11 + 4 * ROUNDS && e == id * 13 + 5 * ROUNDS && f == id * 17 + 6 * ROUNDS);
	CHECK(x > 0 && y > 0 && z > 0);
	current = -1;
	zk__fiber_switch(&fiber_sp[id], main_sp);
	abort(); /* never resumed after its last switch */
}

int main(void)
{
	char *stacks[NFIBERS];
	long keep1 = 42, keep2 = 4242;
	double keepf = 3.5;
	for (long i = 0; i < NFIBERS; i++) {
		stacks[i] = aligned_alloc(16, STACK_SIZE);
		fiber_sp[i] = zk__fiber_init(stacks[i] + STACK_SIZE, fiber_main, (void *)(intptr_t)i);
	}
	/* Start all, then round-robin. */
	for (int r = 0; r <= ROUNDS; r++) {
		for (long i = 0; i < NFIBERS; i++) {
			current = (int)i;
			zk__fiber_switch(&main_sp, fiber_sp[i]);
			if (r == ROUNDS)
				CHECK(current == -1);
			keep1 += 1;
			keepf = mix(keepf, 0) / 1.5;
		}
	}
	keep2 += keep1;
	CHECK(keep1 == 42 + (long)NFIBERS * (ROUNDS + 1));
	CHECK(keep2 == 4242 + keep1);
	CHECK(keepf > 3.49 && keepf < 3.51);
	for (long i = 0; i < NFIBERS; i++)
		free(stacks[i]);
	if (failures) {
		fprintf(stderr, "fiber_switch: %d check(s) failed\n", failures);
		return 1;
	}
	printf("fiber_switch: %d fibers x %d rounds OK\n", NFIBERS, ROUNDS);
	return 0;
}
