// SPDX-License-Identifier: Apache-2.0
/* aether_common.h: maps, filters and helpers shared by every aether-rec BPF program.
 *
 * Run-time settings, in the map aether_config (set from user space before the first probe
 * is attached, so that one compiled object serves every recording with the same layers and
 * options: recorder/progcache.py): the recorder's own process (SELF_TGID, never traced) and
 * the latency under which I/Os are dropped (min_lat_ns, 0: keep all: aether_below_min_lat).
 *
 * Compile-time parameters (passed by the recorder as cflags, -DNAME=value):
 *   FILTER_PID=1         only tasks whose tgid is in traced_tgids (filled from user space,
 *                        followed through sched_process_fork); PID_MAP_SIZE bounds it
 *   FILTER_COMM=1        only tasks whose comm equals comm_filter[0] (set from user space)
 *   FILTER_CGROUP=1      only tasks under the cgroup in cgroup_filter[0] (cgroup v2)
 *   AETHER_RINGBUF=1     emit into a BPF ring buffer of AETHER_RB_PAGES pages (kernel 5.8+)
 *                        instead of a perf buffer; a failed reservation is counted in
 *                        AETHER_C_SUBMIT_FAILED, the ring transport's loss count;
 *                        each CPU wakes the reader once per AETHER_RB_WAKEUP_EVENTS events
 */
#ifndef AETHER_COMMON_H
#define AETHER_COMMON_H

#include <uapi/linux/ptrace.h>
#include "aether_event.h"

#ifndef PID_MAP_SIZE
#define PID_MAP_SIZE 16384
#endif

/* per-CPU counters, read by user space (aether_rec.recorder.program.COUNTERS) */
#define AETHER_C_SC_START_FULL   0 /* syscall entry dropped: start map full (or task storage refused) */
#define AETHER_C_SC_UNMATCHED    1 /* syscall exit without a recorded entry */
#define AETHER_C_BLK_START_FULL  2 /* block request not tracked: map full */
#define AETHER_C_BLK_UNMATCHED   3 /* block completion without a tracked request */
#define AETHER_C_PID_MAP_FULL    4 /* a child of a traced process could not be added */
#define AETHER_C_SUBMIT_FAILED   5 /* submit failed: perf buffer full (also reported by its
                                    * lost callback) or ring buffer full (the ring's loss count) */
#define AETHER_C_BELOW_MIN_LAT   6 /* I/Os dropped by --min-latency (not a loss) */
#define AETHER_C_SC_OP_MISMATCH  7 /* exit of another syscall than the recorded entry */
#define AETHER_C_BLK_PARTIAL     8 /* partial block completions seen (not a loss) */
#define AETHER_C_VFS_START_FULL  9 /* vfs call not tracked: start map full */
#define AETHER_C_VFS_UNMATCHED  10 /* vfs return without a recorded entry */
#define AETHER_C_BLK_NODATA     11 /* completion of a data-less request we do not track: the
                                    * empty PREFLUSH request whose flush is recorded as the
                                    * device's flush request (not a loss) */
#define AETHER_C_URING_START_FULL 12 /* io_uring request not tracked: map full */
#define AETHER_C_URING_UNMATCHED  13 /* io_uring completion without a recorded submission */
#define AETHER_C_NAME_FAILED      14 /* an open/close/dup record could not be submitted */
#define AETHER_NCOUNTERS        15

/* What a probe returns to the kernel. For tracepoints and kprobes, 0 tells the kernel to
 * drop the event for every perf user of that hook on this CPU (perf stat, perf record
 * would count nothing while we record): return AETHER_PASS, never 0. */
#define AETHER_PASS 1

/* vfs.c's probes: bcc attaches kprobe__X / kretprobe__X by name; the verifier test
 * (tests/test_kernel_loader.py) renames them so that nothing is attached */
#ifndef VFS_ENTRY
#define VFS_ENTRY(fn) kprobe__##fn
#define VFS_RETURN(fn) kretprobe__##fn
#endif

BPF_PERCPU_ARRAY(counters, u64, AETHER_NCOUNTERS);
#ifdef AETHER_RINGBUF
#ifndef AETHER_RB_PAGES
#define AETHER_RB_PAGES 16384
#endif
#ifndef AETHER_RB_WAKEUP_EVENTS
#define AETHER_RB_WAKEUP_EVENTS 4096
#endif
BPF_RINGBUF_OUTPUT(events, AETHER_RB_PAGES);
BPF_PERCPU_ARRAY(rb_since_wakeup, u64, 1);
#else
BPF_PERF_OUTPUT(events);
#endif

/* recorder/filters.py fills it: struct layout "<IIQ" there */
struct aether_config {
    u32 self_tgid;
    u32 pad;
    u64 min_lat_ns;
};
BPF_ARRAY(aether_config, struct aether_config, 1);

static __always_inline struct aether_config *aether_cfg(void)
{
    int zero = 0;
    return aether_config.lookup(&zero);
}
#define SELF_TGID ({ struct aether_config *_c = aether_cfg(); _c ? _c->self_tgid : 0; })

/* --min-latency: is an I/O of this latency dropped? (one lookup of the settings) */
static __always_inline int aether_below_min_lat(u64 lat)
{
    struct aether_config *c = aether_cfg();
    return c && c->min_lat_ns > 0 && lat < c->min_lat_ns;
}

/* The raw_syscalls raw tracepoints (x86_64; syscall.c with AETHER_SC_RAW, names.c with
 * AETHER_NM_RAW, both called from sys_raw.c's one program per tracepoint): a syscall's
 * arguments are its saved user registers, SC_REG0..5 of a struct sc_regs R. */
#if defined(AETHER_SC_RAW) || defined(AETHER_NM_RAW)
#define AETHER_USER_CS 0x33 /* __USER_CS, arch/x86/include/asm/segment.h */
/* the registers read, in pt_regs order (arch/x86/include/asm/ptrace.h), r10 .. cs */
struct sc_regs {
    u64 r10, r9, r8, ax, cx, dx, si, di, orig_ax, ip, cs;
};
#define SC_REG0 R.di
#define SC_REG1 R.si
#define SC_REG2 R.dx
#define SC_REG3 R.r10
#define SC_REG4 R.r8
#define SC_REG5 R.r9

/* the user registers of a 64-bit syscall; -1 for a compat (32-bit) one, which has its own
 * numbering and is not traced (as on the classic tracepoints), or a failed read */
static __always_inline int sc_regs_read(struct sc_regs *r, u64 regs)
{
    if (bpf_probe_read_kernel(r, sizeof(*r), (const void *)(regs + offsetof(struct pt_regs, r10))) != 0)
        return -1;
    return r->cs == AETHER_USER_CS ? 0 : -1;
}

/* at exit only the number and the mode are needed: orig_ax .. cs, 24 bytes, not 88 */
struct sc_nr_regs {
    u64 orig_ax, ip, cs;
};
static __always_inline int sc_nr_read(struct sc_nr_regs *r, u64 regs)
{
    if (bpf_probe_read_kernel(r, sizeof(*r), (const void *)(regs + offsetof(struct pt_regs, orig_ax))) != 0)
        return -1;
    return r->cs == AETHER_USER_CS ? 0 : -1;
}
#endif

#ifdef FILTER_PID
BPF_HASH(traced_tgids, u32, u8, PID_MAP_SIZE);
#endif
#ifdef FILTER_COMM
struct aether_comm { char comm[AETHER_COMM_LEN]; };
BPF_ARRAY(comm_filter, struct aether_comm, 1);
#endif
#ifdef FILTER_CGROUP
BPF_CGROUP_ARRAY(cgroup_filter, 1);
#endif

static __always_inline void aether_count(int idx)
{
    u64 *v = counters.lookup(&idx);
    if (v)
        (*v)++;
}

/* Does the current task pass the task filters (pid, comm, cgroup)? */
static __always_inline int aether_task_wanted(u32 tgid)
{
#ifdef FILTER_PID
    if (!traced_tgids.lookup(&tgid))
        return 0;
#endif
#ifdef FILTER_COMM
    {
        int zero = 0;
        struct aether_comm *want = comm_filter.lookup(&zero);
        char cur[AETHER_COMM_LEN] = {};
        if (!want)
            return 0;
        bpf_get_current_comm(&cur, sizeof(cur));
#pragma unroll
        for (int i = 0; i < AETHER_COMM_LEN; i++) {
            if (cur[i] != want->comm[i])
                return 0;
            if (cur[i] == 0)
                break;
        }
    }
#endif
#ifdef FILTER_CGROUP
    if (cgroup_filter.check_current_task(0) <= 0)
        return 0;
#endif
    return 1;
}

#if defined(FILTER_PID) || defined(FILTER_COMM) || defined(FILTER_CGROUP)
#define AETHER_TASK_FILTERED 1
#else
#define AETHER_TASK_FILTERED 0
#endif

/* In-flight syscalls of the syscall layer, per thread. Defined here, not in syscall.c,
 * because tasks.c removes the entries of exiting threads and block.c links a request to
 * the syscall in whose context it was submitted.
 * AETHER_SC_TASK_STORAGE (Linux 5.12+, recorder/bpfsys.py has_task_storage): in the
 * thread's own task storage, a slot whose ts is 0 being free; no hashing, no bucket lock
 * and no element to allocate and free per call, which halves what a syscall costs the
 * recorder in the kernel. Else a hash on pid_tgid of at most SC_MAP_SIZE threads. */
#ifdef AETHER_LAYER_SYSCALL_ON
#ifndef SC_MAP_SIZE
#define SC_MAP_SIZE 16384
#endif
struct sc_start_t {
    u64 ts;
    s64 offset;
    u64 bytes;
    s32 fd;
    u32 flags;
    u32 pages_missed; /* page-cache insertions during this syscall (reads) */
    u8  op;
};
#ifdef AETHER_SC_TASK_STORAGE
/* A thread's slot: its call in flight, and what its events say about it as last read:
 * its name (AETHER_COMM_CACHE) and cgroup (AETHER_CGROUP_CACHE), valid while comm_gen and
 * cg_gen equal who_epoch[0] + 1 and who_epoch[2] + 1. syscall.c's task_rename hook (every
 * rename and exec) and cgroup_attach_task hook (every move) bump those. Copying them is
 * cheaper than bpf_get_current_comm's string copy (about 30 ns of every event) and
 * bpf_get_current_cgroup_id's pointer walk (about 13 ns). who_epoch[1]: until when (ns)
 * names are read, not cached (a rename is written just after its hook runs). */
struct sc_task_t {
    struct sc_start_t call; /* first: a pointer to it is a pointer to the slot */
    u64 comm_gen;
    u64 cg_gen;
    u64 cgroup;
    char comm[AETHER_COMM_LEN];
};
BPF_TASK_STORAGE(sc_task, struct sc_task_t);
#if defined(AETHER_COMM_CACHE) || defined(AETHER_CGROUP_CACHE)
BPF_ARRAY(who_epoch, u64, 3);
#endif
#else
#if defined(AETHER_COMM_CACHE) || defined(AETHER_CGROUP_CACHE)
#error "AETHER_COMM_CACHE and AETHER_CGROUP_CACHE keep their values in task storage: AETHER_SC_TASK_STORAGE"
#endif
BPF_HASH(sc_start, u64, struct sc_start_t, SC_MAP_SIZE);
#endif

/* remember the syscall the current thread (id) enters; 0, or -1 when there is no room */
static __always_inline int sc_start_put(u64 id, struct sc_start_t *s)
{
#ifdef AETHER_SC_TASK_STORAGE
    struct sc_task_t *slot =
        sc_task.task_storage_get(bpf_get_current_task_btf(), 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
    if (!slot)
        return -1;
    slot->call = *s;
    return 0;
#else
    return sc_start.update(&id, s) == 0 ? 0 : -1;
#endif
}

/* the syscall the current thread (id) is in, or NULL */
static __always_inline struct sc_start_t *sc_start_get(u64 id)
{
#ifdef AETHER_SC_TASK_STORAGE
    struct sc_task_t *slot = sc_task.task_storage_get(bpf_get_current_task_btf(), 0, 0);
    return (slot && slot->call.ts) ? &slot->call : 0;
#else
    return sc_start.lookup(&id);
#endif
}

/* the current thread (id) left the syscall sc_start_get gave (sp) */
static __always_inline void sc_start_drop(u64 id, struct sc_start_t *sp)
{
#ifdef AETHER_SC_TASK_STORAGE
    sp->ts = 0;
#else
    sc_start.delete(&id);
#endif
}
#endif

/* The in-flight io_uring request of a thread, while io_uring_enter runs: block requests
 * issued inline belong to it (bpf/io_uring.c sets it at each submission). */
#ifdef AETHER_LAYER_IO_URING_ON
struct uring_cur_t {
    u64 ts;
    s32 fd;
};
BPF_HASH(uring_cur, u64, struct uring_cur_t, SC_MAP_SIZE);
#endif

/* The syscall or io_uring request the current thread is in, if any: its start time
 * (the link) and fd. */
static __always_inline u64 aether_link(u64 id, s32 *fd)
{
#ifdef AETHER_LAYER_IO_URING_ON
    struct uring_cur_t *u = uring_cur.lookup(&id);
    if (u) {
        *fd = u->fd;
        return u->ts;
    }
#endif
#ifdef AETHER_LAYER_SYSCALL_ON
    struct sc_start_t *s = sc_start_get(id);
    if (s) {
        *fd = s->fd;
        return s->ts;
    }
#endif
    *fd = -1;
    return 0;
}

/* The fields every event of the current task shares but its cgroup and name: who, where,
 * when, what. */
static __always_inline void aether_fill_task(struct aether_event *ev, u64 id, u64 ts, u64 lat,
                                             u8 layer, u8 op)
{
    ev->ts = ts;
    ev->lat = lat;
    ev->pid = id >> 32;
    ev->tid = (u32)id;
    ev->cpu = bpf_get_smp_processor_id();
    ev->layer = layer;
    ev->op = op;
}

/* ... and those */
static __always_inline void aether_fill_current(struct aether_event *ev, u64 id, u64 ts, u64 lat,
                                                u8 layer, u8 op)
{
    aether_fill_task(ev, id, ts, lat, layer, op);
    ev->cgroup = bpf_get_current_cgroup_id();
    bpf_get_current_comm(&ev->comm, sizeof(ev->comm));
}

static __always_inline void aether_submit(void *ctx, struct aether_event *ev)
{
#ifdef AETHER_RINGBUF
    /* Wake the reader once per AETHER_RB_WAKEUP_EVENTS events of a CPU, not per event:
     * in between it reads on its own timer (at most 100 ms), so a steady stream costs
     * no wakeup per event and a burst still wakes it long before the ring is full.
     * (bcc offers no ringbuf_query on its map objects, so the backlog is counted here.) */
    u64 wake = BPF_RB_NO_WAKEUP;
    int zero = 0;
    u64 *since = rb_since_wakeup.lookup(&zero);
    if (since && ++(*since) >= AETHER_RB_WAKEUP_EVENTS) {
        *since = 0;
        wake = BPF_RB_FORCE_WAKEUP;
    }
    if (events.ringbuf_output(ev, sizeof(*ev), wake) != 0)
        aether_count(AETHER_C_SUBMIT_FAILED);
#else
    if (events.perf_submit(ctx, ev, sizeof(*ev)) < 0)
        aether_count(AETHER_C_SUBMIT_FAILED);
#endif
}

#endif /* AETHER_COMMON_H */
