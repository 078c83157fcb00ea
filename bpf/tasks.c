/* tasks.c: task lifetime hooks of aether-rec.
 *
 * With FILTER_PID, children of traced processes are traced too (sched_process_fork adds
 * them to traced_tgids). With the syscall layer (AETHER_LAYER_SYSCALL_ON), a thread that
 * exits while its syscall is recorded as in flight has its entry removed, so exits that
 * never return (exit_group, a killed thread) do not fill the start map.
 */
#include "aether_common.h"

#ifdef FILTER_PID
TRACEPOINT_PROBE(sched, sched_process_fork)
{
    u32 parent = bpf_get_current_pid_tgid() >> 32;
    if (traced_tgids.lookup(&parent)) {
        u32 child = args->child_pid;
        u8 one = 1;
        if (traced_tgids.update(&child, &one) != 0)
            aether_count(AETHER_C_PID_MAP_FULL);
    }
    return 0;
}
#endif

#if defined(FILTER_PID) || defined(AETHER_LAYER_SYSCALL_ON)
TRACEPOINT_PROBE(sched, sched_process_exit)
{
    u64 id = bpf_get_current_pid_tgid();
#ifdef AETHER_LAYER_SYSCALL_ON
    sc_start.delete(&id);
#endif
#ifdef FILTER_PID
    u32 tid = (u32)id;
    if (tid != (u32)(id >> 32))
        traced_tgids.delete(&tid); /* a thread added by the fork hook */
#endif
    return 0;
}
#endif
