// SPDX-License-Identifier: Apache-2.0
/* tasks.c: task lifetime hooks of aether-rec, and the names output (names.c).
 *
 * sched_process_fork: with FILTER_PID, children of traced processes are traced too (added
 * to traced_tgids); with the names output, the child's inherited fds and working
 * directory are recorded. sched_process_exit: a thread that exits while a syscall or an
 * fd-making call is recorded as in flight has its entry removed, so calls that never
 * return (exit_group, a killed thread) do not fill the maps; with the names output, the
 * exit of a process's main thread is recorded, so user space can forget its fds.
 */
#include "aether_common.h"
#ifdef AETHER_NAMES_ON
#include "names.c"
#endif

#if defined(FILTER_PID) || defined(AETHER_NAMES_ON)
TRACEPOINT_PROBE(sched, sched_process_fork)
{
    u64 id = bpf_get_current_pid_tgid();
#ifdef FILTER_PID
    u32 parent = id >> 32;
    if (traced_tgids.lookup(&parent)) {
        u32 child = args->child_pid;
        u8 one = 1;
        if (traced_tgids.update(&child, &one) != 0)
            aether_count(AETHER_C_PID_MAP_FULL);
    }
#endif
#ifdef AETHER_NAMES_ON
    nm_fork(args, id, args->child_pid);
#endif
    return AETHER_PASS;
}
#endif

#if defined(FILTER_PID) || defined(AETHER_LAYER_SYSCALL_ON) || defined(AETHER_NAMES_ON) || \
    defined(AETHER_LAYER_IO_URING_ON)
TRACEPOINT_PROBE(sched, sched_process_exit)
{
    u64 id = bpf_get_current_pid_tgid();
#if defined(AETHER_LAYER_SYSCALL_ON) && !defined(AETHER_SC_TASK_STORAGE)
    sc_start.delete(&id); /* task storage goes with the task */
#endif
#ifdef AETHER_LAYER_IO_URING_ON
    uring_cur.delete(&id);
#endif
#ifdef AETHER_NAMES_ON
    name_pending.delete(&id);
    /* user space forgets the process's fds a while after (fdtable.py) */
    if ((u32)id == (u32)(id >> 32) && nm_wanted(id))
        nm_emit(args, id, AETHER_NAME_EXIT, -1, -1, 0, 0);
#endif
#ifdef FILTER_PID
    u32 tid = (u32)id;
    if (tid != (u32)(id >> 32))
        traced_tgids.delete(&tid); /* a thread added by the fork hook */
#endif
    return AETHER_PASS;
}
#endif
