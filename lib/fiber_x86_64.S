/* lib/fiber_x86_64.S — the fiber context switch for x86_64 System V.
 *
 * zk__fiber_switch(void **save_sp, void *load_sp) pushes the callee-saved
 * registers the ABI requires us to preserve (rbx, rbp, r12-r15) on the current
 * stack, stores the stack pointer in *save_sp, loads load_sp and pops the
 * other fiber's registers. Everything else is caller-saved, so the compiler
 * already spilled it around the call. MXCSR and the x87 control word are not
 * switched: tasks share the worker thread's floating-point environment (as
 * with threads calling fesetenv, changing it inside a task is unsupported).
 *
 * zk__fiber_boot is where a new fiber's first switch "returns" to: its stack
 * was prepared by zk__fiber_init with r12 = argument and r13 = entry. */
	.text
	.p2align 4
	.globl zk__fiber_switch
	.hidden zk__fiber_switch
	.type zk__fiber_switch,@function
zk__fiber_switch:
	.cfi_startproc
	pushq %rbp
	pushq %rbx
	pushq %r12
	pushq %r13
	pushq %r14
	pushq %r15
	movq %rsp, (%rdi)
	movq %rsi, %rsp
	popq %r15
	popq %r14
	popq %r13
	popq %r12
	popq %rbx
	popq %rbp
	ret
	.cfi_endproc
	.size zk__fiber_switch, .-zk__fiber_switch

	.p2align 4
	.globl zk__fiber_boot
	.hidden zk__fiber_boot
	.type zk__fiber_boot,@function
zk__fiber_boot:
	.cfi_startproc
	.cfi_undefined rip
	movq %r12, %rdi
	callq *%r13
	ud2
	.cfi_endproc
	.size zk__fiber_boot, .-zk__fiber_boot

	.section .note.GNU-stack,"",@progbits
