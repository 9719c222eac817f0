/*
 * keel's clone trampoline for x86-64 Linux: `long keel_trampoline(struct ctx *ctx)`.
 *
 * Called from Node through koffi. It issues clone3(ctx->clone_args) and returns the result in the
 * parent. The child never returns to the caller (no JavaScript runs in it): it interprets the
 * syscall program at ctx->program, which normally ends in execve.
 *
 * Context layout (all little-endian u64; see src/runtime/native/program.ts, which builds it):
 *     0  number of instructions
 *     8  error fd: on a failing step the child writes {step, errno} (2 x u64) there, then exit_group(1)
 *    16  error record: step
 *    24  error record: errno
 *    32  clone_args (struct clone_args, 88 bytes used, 96 reserved)
 *   128  instructions, 12 x u64 each:
 *         [0] syscall number, or a pseudo-op (>= 1000)
 *         [1] flags: bit i (0..5): argument i is an address, load the u64 stored there
 *                    bit 6: store the result (u64) at the address in [2]
 *                    bit 7: a result of 0 does not take the success jump
 *         [2] result address
 *         [3] tolerated errno: 0 none, all ones any
 *         [4] jump on a tolerated error: instruction index, all ones = next instruction
 *         [5] jump on success: instruction index, all ones = next instruction
 *         [6..11] arguments 0..5
 * Pseudo-ops: 1000 FAIL (errno = arg0), 1001 STORE (*(u64 *)arg0 = arg1),
 *             1002 CHECK32 (fail with errno = *(u32 *)arg0 unless it is 0).
 * Running past the last instruction ends the child with exit_group(0).
 */
        .intel_syntax noprefix
        .text
        .globl keel_trampoline
keel_trampoline:
        push    r12
        mov     r12, rdi
        lea     rdi, [r12 + 32]
        mov     esi, 88
        mov     eax, 435                /* clone3 */
        syscall
        test    rax, rax
        jz      child
        pop     r12
        ret

child:
        xor     r13d, r13d              /* pc */
next_insn:
        cmp     r13, [r12]
        jae     finished
        imul    r14, r13, 96
        lea     r14, [r12 + r14 + 128]  /* r14 = &insn[pc] */
        mov     r15, [r14 + 8]          /* flags */
        mov     rdi, [r14 + 48]
        test    r15d, 1
        jz      1f
        mov     rdi, [rdi]
1:      mov     rsi, [r14 + 56]
        test    r15d, 2
        jz      2f
        mov     rsi, [rsi]
2:      mov     rdx, [r14 + 64]
        test    r15d, 4
        jz      3f
        mov     rdx, [rdx]
3:      mov     r10, [r14 + 72]
        test    r15d, 8
        jz      4f
        mov     r10, [r10]
4:      mov     r8, [r14 + 80]
        test    r15d, 16
        jz      5f
        mov     r8, [r8]
5:      mov     r9, [r14 + 88]
        test    r15d, 32
        jz      6f
        mov     r9, [r9]
6:      mov     rax, [r14]
        cmp     rax, 1000
        jae     pseudo
        syscall
result:
        test    r15d, 64
        jz      7f
        mov     rcx, [r14 + 16]
        mov     [rcx], rax
7:      cmp     rax, -4095
        jae     error
        test    r15d, 128
        jz      8f
        test    rax, rax
        jz      advance
8:      mov     rcx, [r14 + 40]
jump:   cmp     rcx, -1
        je      advance
        mov     r13, rcx
        jmp     next_insn
advance:
        inc     r13
        jmp     next_insn

error:
        mov     rcx, rax
        neg     rcx                     /* errno */
        mov     rdx, [r14 + 24]
        cmp     rdx, -1
        je      tolerated
        cmp     rdx, rcx
        jne     fail
tolerated:
        mov     rcx, [r14 + 32]
        jmp     jump

fail:   /* rcx = errno */
        mov     [r12 + 16], r13
        mov     [r12 + 24], rcx
        mov     rdi, [r12 + 8]
        lea     rsi, [r12 + 16]
        mov     edx, 16
        mov     eax, 1                  /* write */
        syscall
        mov     edi, 1
        mov     eax, 231                /* exit_group */
        syscall
        hlt

finished:
        xor     edi, edi
        mov     eax, 231                /* exit_group */
        syscall
        hlt

pseudo:
        cmp     rax, 1000
        jne     9f
        mov     rcx, rdi                /* FAIL */
        jmp     fail
9:      cmp     rax, 1001
        jne     10f
        mov     [rdi], rsi              /* STORE */
        xor     eax, eax
        jmp     result
10:     cmp     rax, 1002
        jne     11f
        mov     ecx, [rdi]              /* CHECK32 */
        test    ecx, ecx
        jnz     fail
        xor     eax, eax
        jmp     result
11:     mov     ecx, 38                 /* ENOSYS: unknown pseudo-op */
        jmp     fail
