/* tests/windows/test_fiber.c — the Win64 fiber switch on its own (no
 * runtime): callee-saved xmm and general registers survive switches, a
 * large frame probes its pages through ___chkstk_ms on a fiber stack, the
 * TEB stack bounds follow the switch, and longjmp (which unwinds with
 * RtlUnwindEx on mingw-w64, checking frames against the TEB bounds) works
 * inside a fiber. Usage: test_fiber CASE. */
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <windows.h>

#include "../../lib/fiber.h"

#define STACK_SIZE (256u * 1024u)

void *main_sp, *fib_sp; /* named from asm */
static char *stack_lo, *stack_top;
static int failures;

#define CHECK(c)                                                                         \
	do {                                                                             \
		if (!(c)) {                                                              \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #c); \
			failures++;                                                      \
		}                                                                        \
	} while (0)

static void *teb_field(unsigned off)
{
	void *v;
	__asm__ volatile("movq %%gs:(%1), %0" : "=r"(v) : "r"((uintptr_t)off));
	return v;
}

static void make_stack(void)
{
	size_t ps = 4096;
	char *mem = VirtualAlloc(NULL, STACK_SIZE + ps, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE);
	DWORD old;
	VirtualProtect(mem, ps, PAGE_NOACCESS, &old); /* guard below the stack */
	stack_lo = mem + ps;
	stack_top = mem + ps + STACK_SIZE;
}

/* --- ping-pong with counters --------------------------------------------- */
static int counter;
static void pingpong_entry(void *arg)
{
	int n = *(int *)arg;
	for (int i = 0; i < n; i++) {
		counter++;
		zk__fiber_switch(&fib_sp, main_sp);
	}
	for (;;)
		zk__fiber_switch(&fib_sp, main_sp);
}

static int case_pingpong(void)
{
	int n = 100000;
	fib_sp = zk__fiber_init_win(stack_lo, stack_top, pingpong_entry, &n);
	for (int i = 0; i < n; i++) {
		zk__fiber_switch(&main_sp, fib_sp);
		CHECK(counter == i + 1);
	}
	return failures;
}

/* --- xmm6-15 and rsi/rdi/rbx/r12-r15 survive a switch -------------------- */
static void clobber_entry(void *arg)
{
	(void)arg;
	for (;;) {
		/* Trash every callee-saved register the ABI names, then go back. */
		__asm__ volatile("pcmpeqd %%xmm6, %%xmm6\n\tpcmpeqd %%xmm7, %%xmm7\n\t"
				 "pcmpeqd %%xmm8, %%xmm8\n\tpcmpeqd %%xmm9, %%xmm9\n\t"
				 "pcmpeqd %%xmm10, %%xmm10\n\tpcmpeqd %%xmm11, %%xmm11\n\t"
				 "pcmpeqd %%xmm12, %%xmm12\n\tpcmpeqd %%xmm13, %%xmm13\n\t"
				 "pcmpeqd %%xmm14, %%xmm14\n\tpcmpeqd %%xmm15, %%xmm15\n\t"
				 "movq $-1, %%rsi\n\tmovq $-1, %%rdi\n\tmovq $-1, %%rbx\n\t"
				 "movq $-1, %%r12\n\tmovq $-1, %%r13\n\tmovq $-1, %%r14\n\t"
				 "movq $-1, %%r15\n\t" ::
				     : "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12",
				       "xmm13", "xmm14", "xmm15", "rsi", "rdi", "rbx", "r12", "r13",
				       "r14", "r15");
		zk__fiber_switch(&fib_sp, main_sp);
	}
}

double reg_in[10], reg_out[10]; /* named from asm */
uint64_t g_in[7], g_out[7];

static int case_registers(void)
{
	fib_sp = zk__fiber_init_win(stack_lo, stack_top, clobber_entry, NULL);
	for (int i = 0; i < 10; i++)
		reg_in[i] = 1.5 + i;
	for (int i = 0; i < 7; i++)
		g_in[i] = 0x1111111111111111ull * (uint64_t)(i + 1);
	/* Load known values, switch to the clobbering fiber and back from one
	 * asm block (so the compiler cannot save them for us), then store them. */
	__asm__ volatile("leaq reg_in(%%rip), %%rax\n\t"
			 "movsd 0(%%rax), %%xmm6\n\tmovsd 8(%%rax), %%xmm7\n\t"
			 "movsd 16(%%rax), %%xmm8\n\tmovsd 24(%%rax), %%xmm9\n\t"
			 "movsd 32(%%rax), %%xmm10\n\tmovsd 40(%%rax), %%xmm11\n\t"
			 "movsd 48(%%rax), %%xmm12\n\tmovsd 56(%%rax), %%xmm13\n\t"
			 "movsd 64(%%rax), %%xmm14\n\tmovsd 72(%%rax), %%xmm15\n\t"
			 "leaq g_in(%%rip), %%rax\n\t"
			 "movq 0(%%rax), %%rsi\n\tmovq 8(%%rax), %%rdi\n\tmovq 16(%%rax), %%rbx\n\t"
			 "movq 24(%%rax), %%r12\n\tmovq 32(%%rax), %%r13\n\t"
			 "movq 40(%%rax), %%r14\n\tmovq 48(%%rax), %%r15\n\t"
			 "leaq main_sp(%%rip), %%rcx\n\tmovq fib_sp(%%rip), %%rdx\n\t"
			 "subq $32, %%rsp\n\tcall zk__fiber_switch\n\taddq $32, %%rsp\n\t"
			 "leaq g_out(%%rip), %%rax\n\t"
			 "movq %%rsi, 0(%%rax)\n\tmovq %%rdi, 8(%%rax)\n\tmovq %%rbx, 16(%%rax)\n\t"
			 "movq %%r12, 24(%%rax)\n\tmovq %%r13, 32(%%rax)\n\tmovq %%r14, 40(%%rax)\n\t"
			 "movq %%r15, 48(%%rax)\n\t"
			 "leaq reg_out(%%rip), %%rax\n\t"
			 "movsd %%xmm6, 0(%%rax)\n\tmovsd %%xmm7, 8(%%rax)\n\t"
			 "movsd %%xmm8, 16(%%rax)\n\tmovsd %%xmm9, 24(%%rax)\n\t"
			 "movsd %%xmm10, 32(%%rax)\n\tmovsd %%xmm11, 40(%%rax)\n\t"
			 "movsd %%xmm12, 48(%%rax)\n\tmovsd %%xmm13, 56(%%rax)\n\t"
			 "movsd %%xmm14, 64(%%rax)\n\tmovsd %%xmm15, 72(%%rax)\n\t"
			 :
			 :
			 : "rax", "rcx", "rdx", "r8", "r9", "r10", "r11", "rsi", "rdi", "rbx",
			   "r12", "r13", "r14", "r15", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4",
			   "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12",
			   "xmm13", "xmm14", "xmm15", "memory", "cc");
	for (int i = 0; i < 10; i++)
		CHECK(reg_out[i] == reg_in[i]);
	for (int i = 0; i < 7; i++)
		CHECK(g_out[i] == g_in[i]);
	return failures;
}

/* --- a 128 KiB frame on the fiber stack (stack probes) ------------------- */
static volatile unsigned long big_sum;
static void __attribute__((noinline)) big_frame(void)
{
	volatile char big[128 * 1024];
	for (size_t i = 0; i < sizeof big; i += 512)
		big[i] = (char)i;
	unsigned long s = 0;
	for (size_t i = 0; i < sizeof big; i += 512)
		s += (unsigned char)big[i];
	big_sum = s;
}

static void *seen_base, *seen_limit, *seen_dealloc;
static void big_entry(void *arg)
{
	(void)arg;
	seen_base = teb_field(0x08);
	seen_limit = teb_field(0x10);
	seen_dealloc = teb_field(0x1478);
	big_frame();
	zk__fiber_switch(&fib_sp, main_sp);
	for (;;)
		zk__fiber_switch(&fib_sp, main_sp);
}

static int case_chkstk(void)
{
	void *base0 = teb_field(0x08), *limit0 = teb_field(0x10);
	fib_sp = zk__fiber_init_win(stack_lo, stack_top, big_entry, NULL);
	zk__fiber_switch(&main_sp, fib_sp);
	unsigned long want = 0;
	for (size_t i = 0; i < 128 * 1024; i += 512)
		want += (unsigned char)(char)i;
	CHECK(big_sum == want);
	/* Inside the fiber the TEB named the fiber's stack; back here, ours. */
	CHECK((char *)seen_base <= stack_top && (char *)seen_base > stack_top - 64);
	CHECK(seen_limit == stack_lo);
	CHECK(seen_dealloc == stack_lo);
	CHECK(teb_field(0x08) == base0);
	CHECK(teb_field(0x10) == limit0);
	return failures;
}

/* --- longjmp inside a fiber (RtlUnwindEx walks the fiber's frames) ------- */
static jmp_buf jb;
static volatile int jump_depth = 20;
static int jumped;
/* gcc cannot see that mingw's longjmp does not return. */
#pragma GCC diagnostic ignored "-Winfinite-recursion"
static void __attribute__((noinline)) jump_deep(int depth)
{
	volatile char pad[256];
	pad[0] = (char)depth;
	if (depth > 0)
		jump_deep(depth - 1);
	longjmp(jb, 7);
	(void)pad[0];
}

static void longjmp_entry(void *arg)
{
	(void)arg;
	int r = setjmp(jb);
	if (r == 0)
		jump_deep(jump_depth);
	else
		jumped = r;
	for (;;)
		zk__fiber_switch(&fib_sp, main_sp);
}

static int case_longjmp(void)
{
	fib_sp = zk__fiber_init_win(stack_lo, stack_top, longjmp_entry, NULL);
	zk__fiber_switch(&main_sp, fib_sp);
	CHECK(jumped == 7);
	return failures;
}

/* --- a stack walk from inside a fiber ends cleanly ----------------------- */
static USHORT frames;
static void walk_entry(void *arg)
{
	(void)arg;
	void *bt[64];
	frames = RtlCaptureStackBackTrace(0, 64, bt, NULL);
	for (;;)
		zk__fiber_switch(&fib_sp, main_sp);
}

static int case_backtrace(void)
{
	fib_sp = zk__fiber_init_win(stack_lo, stack_top, walk_entry, NULL);
	zk__fiber_switch(&main_sp, fib_sp);
	CHECK(frames >= 1 && frames < 64);
	return failures;
}

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		int (*fn)(void);
	} cases[] = {
		{"pingpong", case_pingpong}, {"registers", case_registers},
		{"chkstk", case_chkstk},     {"longjmp", case_longjmp},
		{"backtrace", case_backtrace},
	};
	make_stack();
	int ran = 0;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		if (argc > 1 && strcmp(argv[1], cases[i].name) != 0)
			continue;
		ran++;
		int before = failures;
		cases[i].fn();
		printf("%s: %s\n", cases[i].name, failures == before ? "ok" : "FAILED");
	}
	if (!ran) {
		fprintf(stderr, "unknown case %s\n", argv[1]);
		return 2;
	}
	return failures ? 1 : 0;
}
