// SPDX-License-Identifier: Apache-2.0
/* sys_raw.c: the raw_syscalls raw tracepoints, one program for every syscall's entry and
 * one for its exit, handing the call to the syscall layer (syscall.c's sc_raw, with
 * AETHER_SC_RAW) and to the fd-naming hooks (names.c's nm_raw, with AETHER_NM_RAW): each
 * is a switch on the syscall number, and their numbers do not overlap. At entry the number
 * is the tracepoint's argument; at exit it is read from the saved registers (orig_ax),
 * which also tells a 64-bit call from a compat one. Always the last source of a program.
 */
#include "aether_common.h"

#if defined(AETHER_SC_RAW) || defined(AETHER_NM_RAW)
RAW_TRACEPOINT_PROBE(sys_enter)
{
    long nr = (long)ctx->args[1];
#ifdef AETHER_SC_RAW
    sc_raw(ctx, 0, nr);
#endif
#ifdef AETHER_NM_RAW
    nm_raw(ctx, 0, nr);
#endif
    return 0;
}

RAW_TRACEPOINT_PROBE(sys_exit)
{
    struct sc_nr_regs R;
    if (sc_nr_read(&R, ctx->args[0]) != 0)
        return 0;
#ifdef AETHER_SC_RAW
    sc_raw(ctx, 1, (long)R.orig_ax);
#endif
#ifdef AETHER_NM_RAW
    nm_raw(ctx, 1, (long)R.orig_ax);
#endif
    return 0;
}
#endif
