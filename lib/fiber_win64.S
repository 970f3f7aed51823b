/* lib/fiber_win64.S — the fiber context switch for the Windows x64 ABI
 * (mingw-w64, GAS syntax). Same contract as fiber_x86_64.S.
 *
 * zk__fiber_switch(void **save_sp [rcx], void *load_sp [rdx]) saves what the
 * Win64 ABI makes callee-saved: rbx, rbp, rdi, rsi, r12-r15 and xmm6-xmm15
 * (rdi/rsi and the xmm registers are caller-saved on System V, not here).
 * It also saves and reloads three fields of the thread's TEB, because
 * Windows checks them against rsp: StackBase (gs:0x08) and StackLimit
 * (gs:0x10) bound every frame the exception dispatcher and RtlUnwindEx
 * (mingw's longjmp) walk, and DeallocationStack (gs:0x1478) is what the
 * stack-overflow handling looks at. Without the switch, an exception or a
 * longjmp inside a task would see its frames as "outside the stack" and
 * the process would be killed.
 *
 * Frame, from the saved stack pointer upwards (see zk__fiber_init_win):
 *   [0,160)  xmm6..xmm15 (16-byte aligned: the pushes below leave rsp
 *            aligned because the caller's call left it at 8 mod 16)
 *   160 DeallocationStack, 168 StackLimit, 176 StackBase,
 *   184 r15, 192 r14, 200 r13, 208 r12, 216 rdi, 224 rsi, 232 rbx, 240 rbp,
 *   248 return address.
 * MXCSR and the x87 control word are not switched, as on System V. */
	.text
	.p2align 4
	.globl zk__fiber_switch
	.def zk__fiber_switch; .scl 2; .type 32; .endef
zk__fiber_switch:
	pushq %rbp
	pushq %rbx
	pushq %rsi
	pushq %rdi
	pushq %r12
	pushq %r13
	pushq %r14
	pushq %r15
	pushq %gs:0x08
	pushq %gs:0x10
	pushq %gs:0x1478
	subq $160, %rsp
	movaps %xmm6, 0(%rsp)
	movaps %xmm7, 16(%rsp)
	movaps %xmm8, 32(%rsp)
	movaps %xmm9, 48(%rsp)
	movaps %xmm10, 64(%rsp)
	movaps %xmm11, 80(%rsp)
	movaps %xmm12, 96(%rsp)
	movaps %xmm13, 112(%rsp)
	movaps %xmm14, 128(%rsp)
	movaps %xmm15, 144(%rsp)
	movq %rsp, (%rcx)
	movq %rdx, %rsp
	movaps 0(%rsp), %xmm6
	movaps 16(%rsp), %xmm7
	movaps 32(%rsp), %xmm8
	movaps 48(%rsp), %xmm9
	movaps 64(%rsp), %xmm10
	movaps 80(%rsp), %xmm11
	movaps 96(%rsp), %xmm12
	movaps 112(%rsp), %xmm13
	movaps 128(%rsp), %xmm14
	movaps 144(%rsp), %xmm15
	addq $160, %rsp
	popq %gs:0x1478
	popq %gs:0x10
	popq %gs:0x08
	popq %r15
	popq %r14
	popq %r13
	popq %r12
	popq %rdi
	popq %rsi
	popq %rbx
	popq %rbp
	ret

/* Where a new fiber's first switch returns to: r12 = argument, r13 =
 * entry. rsp is 16-byte aligned here; the 32 bytes below are the callee's
 * shadow space (the ABI makes the caller reserve it). The unwind info says
 * so, so that a stack walk from inside the task ends at the zero return
 * address zk__fiber_init_win left above this frame. */
	.p2align 4
	.globl zk__fiber_boot
	.def zk__fiber_boot; .scl 2; .type 32; .endef
	.seh_proc zk__fiber_boot
zk__fiber_boot:
	subq $32, %rsp
	.seh_stackalloc 32
	.seh_endprologue
	movq %r12, %rcx
	callq *%r13
	ud2
	.seh_endproc
