/* lib/fiber_aarch64.S — the fiber context switch for AArch64 (AAPCS64).
 *
 * zk__fiber_switch(void **save_sp, void *load_sp) saves the callee-saved
 * registers x19-x28, the frame pointer x29, the link register x30 and the low
 * halves d8-d15 of v8-v15 in a 176-byte frame on the current stack, stores sp
 * in *save_sp, loads load_sp, restores the other fiber's frame and returns
 * through its x30. FPCR is not switched (see fiber_x86_64.S).
 *
 * zk__fiber_boot is the x30 of a new fiber's prepared frame: x19 = argument,
 * x20 = entry. */
	.text
	.p2align 4
	.globl zk__fiber_switch
	.hidden zk__fiber_switch
	.type zk__fiber_switch,%function
zk__fiber_switch:
	sub sp, sp, #176
	stp x19, x20, [sp, #0]
	stp x21, x22, [sp, #16]
	stp x23, x24, [sp, #32]
	stp x25, x26, [sp, #48]
	stp x27, x28, [sp, #64]
	stp x29, x30, [sp, #80]
	stp d8, d9, [sp, #96]
	stp d10, d11, [sp, #112]
	stp d12, d13, [sp, #128]
	stp d14, d15, [sp, #144]
	mov x9, sp
	str x9, [x0]
	mov sp, x1
	ldp x19, x20, [sp, #0]
	ldp x21, x22, [sp, #16]
	ldp x23, x24, [sp, #32]
	ldp x25, x26, [sp, #48]
	ldp x27, x28, [sp, #64]
	ldp x29, x30, [sp, #80]
	ldp d8, d9, [sp, #96]
	ldp d10, d11, [sp, #112]
	ldp d12, d13, [sp, #128]
	ldp d14, d15, [sp, #144]
	add sp, sp, #176
	ret
	.size zk__fiber_switch, .-zk__fiber_switch

	.p2align 4
	.globl zk__fiber_boot
	.hidden zk__fiber_boot
	.type zk__fiber_boot,%function
zk__fiber_boot:
	mov x0, x19
	blr x20
	brk #0
	.size zk__fiber_boot, .-zk__fiber_boot

	.section .note.GNU-stack,"",%progbits
