// SPDX-License-Identifier: Apache-2.0
/* syscall.c: the syscall layer of aether-rec.
 *
 * One sys_enter_X / sys_exit_X tracepoint pair per I/O syscall, paired per thread (in
 * the thread's task storage, or a bounded hash on pid_tgid: aether_common.h). A syscall X is compiled in when AETHER_SC_X is defined
 * (the recorder defines those the running kernel's tracefs formats support). The map of
 * syscalls in flight (sc_start_put/get/drop) lives in aether_common.h: block.c links
 * requests to it.
 * With FILEMAP_ADD (filemap:mm_filemap_add_to_page_cache exists), pages added to the page
 * cache while a read is in flight are counted into that read's pages_missed (a read that
 * adds none was served from the cache); FILEMAP_HAS_ORDER: the event has a folio order.
 * AETHER_COMM_CACHE, AETHER_CGROUP_CACHE (with task storage): an event's comm and cgroup
 * are the thread's, kept in its slot, read again after any rename, exec or cgroup move
 * (sc_who).
 * Parameters: SC_MAP_SIZE (in-flight syscalls tracked), AETHER_MAX_IOV (iovecs summed
 * for readv-like calls), AETHER_COMM_SETTLE_NS, and those of aether_common.h.
 */
#include <uapi/linux/uio.h>
#include "aether_common.h"

/* tracefs declares preadv2/pwritev2's flags as rwf_t (include/linux/fs.h, not included) */
typedef int rwf_t;
/* and io_submit/io_getevents' context as aio_context_t (uapi/linux/aio_abi.h) */
typedef unsigned long aio_context_t;

#ifndef AETHER_MAX_IOV
#define AETHER_MAX_IOV 16
#endif

/* RWF_DSYNC / RWF_SYNC (uapi/linux/fs.h) */
#define AETHER_RWF_DSYNC 0x2
#define AETHER_RWF_SYNC  0x4

static __always_inline int sc_enter(u8 op, s32 fd, u64 bytes, s64 offset, u32 flags)
{
    u64 id = bpf_get_current_pid_tgid();
    u32 tgid = id >> 32;
    if (tgid == SELF_TGID || !aether_task_wanted(tgid))
        return AETHER_PASS;
    struct sc_start_t s = {};
    s.ts = bpf_ktime_get_ns();
    s.offset = offset;
    s.bytes = bytes;
    s.fd = fd;
    s.flags = flags;
    s.op = op;
    if (sc_start_put(id, &s) != 0)
        aether_count(AETHER_C_SC_START_FULL);
    return AETHER_PASS;
}

/* The current thread's cgroup and name into ev. AETHER_CGROUP_CACHE, AETHER_COMM_CACHE:
 * from its slot (sp, sc_start_get's answer), read again only when some task was moved to
 * another cgroup, or renamed (or exec'd), since (who_epoch, aether_common.h); a name also
 * while a rename may be under way. */
static __always_inline void sc_who(struct sc_start_t *sp, u64 now, struct aether_event *ev)
{
#if defined(AETHER_COMM_CACHE) || defined(AETHER_CGROUP_CACHE)
    struct sc_task_t *t = (struct sc_task_t *)sp;
    int k;
    u64 *gen;
#endif
#ifdef AETHER_CGROUP_CACHE
    k = 2;
    gen = who_epoch.lookup(&k);
    if (gen) {
        u64 want = *gen + 1;
        if (t->cg_gen != want) {
            t->cgroup = bpf_get_current_cgroup_id();
            t->cg_gen = want;
        }
        ev->cgroup = t->cgroup;
    } else {
        ev->cgroup = bpf_get_current_cgroup_id();
    }
#else
    ev->cgroup = bpf_get_current_cgroup_id();
#endif
#ifdef AETHER_COMM_CACHE
    k = 0;
    gen = who_epoch.lookup(&k);
    k = 1;
    u64 *until = who_epoch.lookup(&k);
    if (gen && until && now >= *until) {
        u64 want = *gen + 1;
        if (t->comm_gen != want) {
            bpf_get_current_comm(t->comm, sizeof(t->comm));
            t->comm_gen = want;
        }
        __builtin_memcpy(ev->comm, t->comm, AETHER_COMM_LEN);
        return;
    }
#endif
    bpf_get_current_comm(ev->comm, AETHER_COMM_LEN);
}

#ifdef AETHER_COMM_CACHE
#ifndef AETHER_COMM_SETTLE_NS
#define AETHER_COMM_SETTLE_NS 10000000ULL
#endif
/* Some task's name changes (prctl PR_SET_NAME, a write to /proc/PID/comm, and exec, which
 * names the task through the same __set_task_comm): every cached name may be stale. The
 * new name is written just after this hook, so for AETHER_COMM_SETTLE_NS names are read,
 * not cached. Raw tracepoints: the kernel skips a raw tracepoint program only when that
 * same program is already running on the CPU. */
RAW_TRACEPOINT_PROBE(task_rename)
{
    int k = 0;
    u64 *gen = who_epoch.lookup(&k);
    if (gen)
        __sync_fetch_and_add(gen, 1);
    k = 1;
    u64 *until = who_epoch.lookup(&k);
    if (until)
        *until = bpf_ktime_get_ns() + AETHER_COMM_SETTLE_NS;
    return 0;
}
#endif

#ifdef AETHER_CGROUP_CACHE
/* A task (or a whole process) was moved to another cgroup: the kernel runs this hook
 * after the move, so a cgroup read after it is the new one. */
RAW_TRACEPOINT_PROBE(cgroup_attach_task)
{
    int k = 2;
    u64 *gen = who_epoch.lookup(&k);
    if (gen)
        __sync_fetch_and_add(gen, 1);
    return 0;
}
#endif

static __always_inline int sc_exit(void *ctx, u8 op, long ret)
{
    u64 id = bpf_get_current_pid_tgid();
    struct sc_start_t *sp = sc_start_get(id);
    if (!sp) {
        u32 tgid = id >> 32;
        if (tgid != SELF_TGID && aether_task_wanted(tgid))
            aether_count(AETHER_C_SC_UNMATCHED);
        return AETHER_PASS;
    }
    struct sc_start_t s = *sp;
    sc_start_drop(id, sp);
    if (s.op != op) {
        aether_count(AETHER_C_SC_OP_MISMATCH);
        return AETHER_PASS;
    }
    u64 now = bpf_ktime_get_ns();
    u64 lat = now - s.ts;
    if (aether_below_min_lat(lat)) {
        aether_count(AETHER_C_BELOW_MIN_LAT);
        return AETHER_PASS;
    }
    struct aether_event ev = {};
    aether_fill_task(&ev, id, s.ts, lat, AETHER_LAYER_SYSCALL, op);
    sc_who(sp, now, &ev); /* (sp stays readable after the drop: it is the task's slot) */
    ev.offset = s.offset;
    ev.bytes = s.bytes;
    ev.result = ret;
    ev.fd = s.fd;
    ev.flags = s.flags;
    ev.pages_missed = s.pages_missed;
    aether_submit(ctx, &ev);
    return AETHER_PASS;
}

#ifdef FILEMAP_ADD
/* a page (or folio) added to the page cache: a miss of the read in flight, if any */
TRACEPOINT_PROBE(filemap, mm_filemap_add_to_page_cache)
{
    u64 id = bpf_get_current_pid_tgid();
    struct sc_start_t *sp = sc_start_get(id);
    if (sp && sp->op != AETHER_OP_WRITE && sp->op != AETHER_OP_PWRITE && sp->op != AETHER_OP_WRITEV &&
        sp->op != AETHER_OP_PWRITEV && sp->op != AETHER_OP_PWRITEV2) {
#ifdef FILEMAP_HAS_ORDER
        sp->pages_missed += 1u << (args->order & 15);
#else
        sp->pages_missed += 1;
#endif
    }
    return AETHER_PASS;
}
#endif

static __always_inline u64 iov_bytes(const struct iovec *vec, u64 vlen)
{
    u64 total = 0;
#pragma unroll
    for (int i = 0; i < AETHER_MAX_IOV; i++) {
        if (i >= vlen)
            break;
        struct iovec v = {};
        bpf_probe_read_user(&v, sizeof(v), &vec[i]);
        total += v.iov_len;
    }
    return total;
}

static __always_inline u32 rwf_flags(u64 rwf)
{
    return (rwf & (AETHER_RWF_DSYNC | AETHER_RWF_SYNC)) ? AETHER_F_SYNC : 0;
}

/* Each syscall is one SC_ENTER(name, op, fd, bytes, offset, flags) + SC_EXIT(name, op) pair
 * below, its arguments written P(field, n): the sys_enter tracepoint's field, or the n-th
 * argument register.
 *
 * Classic tracepoints: one sys_enter_X / sys_exit_X program pair per syscall.
 * AETHER_SC_RAW (x86_64): the raw tracepoints raw_syscalls:sys_enter / sys_exit, one program
 * each for every syscall (sys_raw.c), whose number (AETHER_NR_X, from recorder/probes.py)
 * selects the op: the list below becomes the cases of sc_raw's switch. They skip the
 * trace record the classic path formats for every call, and read the arguments from the
 * task's saved user registers (aether_common.h). x32 numbers (bit 30 set) match no case. */
#ifdef AETHER_SC_RAW
#define P(field, n) SC_REG##n

#define SC_ENTER(name, opcode, fd, bytes, offset, flags)                                       \
    case AETHER_NR_##name:                                                                    \
        if (is_exit)                                                                          \
            return sc_exit(ctx, opcode, (long)ctx->args[1]);                                  \
        if (sc_regs_read(&R, ctx->args[0]) != 0)                                              \
            return AETHER_PASS;                                                               \
        return sc_enter(opcode, (s32)(fd), (u64)(bytes), (s64)(offset), (u32)(flags));
#define SC_EXIT(name, opcode)

/* the op of syscall nr: its entry (is_exit 0: the arguments are read only for our
 * syscalls) or its exit; the switch's cases are the list below */
static __always_inline int sc_raw(struct bpf_raw_tracepoint_args *ctx, int is_exit, long nr)
{
    struct sc_regs R = {};
    switch (nr) {
#else
#define P(field, n) args->field
#define SC_EXIT(name, opcode) \
    TRACEPOINT_PROBE(syscalls, sys_exit_##name) { return sc_exit(args, opcode, args->ret); }
#define SC_ENTER(name, opcode, fd, bytes, offset, flags) \
    TRACEPOINT_PROBE(syscalls, sys_enter_##name) { return sc_enter(opcode, fd, bytes, offset, flags); }
#endif

#ifdef AETHER_SC_read
SC_ENTER(read, AETHER_OP_READ, P(fd, 0), P(count, 2), -1, 0)
SC_EXIT(read, AETHER_OP_READ)
#endif
#ifdef AETHER_SC_write
SC_ENTER(write, AETHER_OP_WRITE, P(fd, 0), P(count, 2), -1, 0)
SC_EXIT(write, AETHER_OP_WRITE)
#endif
#ifdef AETHER_SC_pread64
SC_ENTER(pread64, AETHER_OP_PREAD, P(fd, 0), P(count, 2), P(pos, 3), 0)
SC_EXIT(pread64, AETHER_OP_PREAD)
#endif
#ifdef AETHER_SC_pwrite64
SC_ENTER(pwrite64, AETHER_OP_PWRITE, P(fd, 0), P(count, 2), P(pos, 3), 0)
SC_EXIT(pwrite64, AETHER_OP_PWRITE)
#endif
#ifdef AETHER_SC_readv
SC_ENTER(readv, AETHER_OP_READV, P(fd, 0), iov_bytes((const struct iovec *)P(vec, 1), P(vlen, 2)), -1, 0)
SC_EXIT(readv, AETHER_OP_READV)
#endif
#ifdef AETHER_SC_writev
SC_ENTER(writev, AETHER_OP_WRITEV, P(fd, 0), iov_bytes((const struct iovec *)P(vec, 1), P(vlen, 2)), -1, 0)
SC_EXIT(writev, AETHER_OP_WRITEV)
#endif
/* 64-bit kernels pass the whole offset in pos_l (pos_h is shifted out) */
#ifdef AETHER_SC_preadv
SC_ENTER(preadv, AETHER_OP_PREADV, P(fd, 0), iov_bytes((const struct iovec *)P(vec, 1), P(vlen, 2)), (s64)P(pos_l, 3), 0)
SC_EXIT(preadv, AETHER_OP_PREADV)
#endif
#ifdef AETHER_SC_pwritev
SC_ENTER(pwritev, AETHER_OP_PWRITEV, P(fd, 0), iov_bytes((const struct iovec *)P(vec, 1), P(vlen, 2)), (s64)P(pos_l, 3), 0)
SC_EXIT(pwritev, AETHER_OP_PWRITEV)
#endif
#ifdef AETHER_SC_preadv2
SC_ENTER(preadv2, AETHER_OP_PREADV2, P(fd, 0), iov_bytes((const struct iovec *)P(vec, 1), P(vlen, 2)), (s64)P(pos_l, 3),
         rwf_flags(P(flags, 5)))
SC_EXIT(preadv2, AETHER_OP_PREADV2)
#endif
#ifdef AETHER_SC_pwritev2
SC_ENTER(pwritev2, AETHER_OP_PWRITEV2, P(fd, 0), iov_bytes((const struct iovec *)P(vec, 1), P(vlen, 2)), (s64)P(pos_l, 3),
         rwf_flags(P(flags, 5)))
SC_EXIT(pwritev2, AETHER_OP_PWRITEV2)
#endif
#ifdef AETHER_SC_fsync
SC_ENTER(fsync, AETHER_OP_FSYNC, P(fd, 0), 0, -1, AETHER_F_SYNC)
SC_EXIT(fsync, AETHER_OP_FSYNC)
#endif
#ifdef AETHER_SC_fdatasync
SC_ENTER(fdatasync, AETHER_OP_FDATASYNC, P(fd, 0), 0, -1, AETHER_F_SYNC)
SC_EXIT(fdatasync, AETHER_OP_FDATASYNC)
#endif
#ifdef AETHER_SC_sync_file_range
SC_ENTER(sync_file_range, AETHER_OP_SYNC_FILE_RANGE, P(fd, 0), P(nbytes, 2), P(offset, 1), 0)
SC_EXIT(sync_file_range, AETHER_OP_SYNC_FILE_RANGE)
#endif
#ifdef AETHER_SC_sendfile64
SC_ENTER(sendfile64, AETHER_OP_SENDFILE, P(in_fd, 1), P(count, 3), -1, 0)
SC_EXIT(sendfile64, AETHER_OP_SENDFILE)
#endif
#ifdef AETHER_SC_copy_file_range
SC_ENTER(copy_file_range, AETHER_OP_COPY_FILE_RANGE, P(fd_in, 0), P(len, 4), -1, 0)
SC_EXIT(copy_file_range, AETHER_OP_COPY_FILE_RANGE)
#endif
#ifdef AETHER_SC_splice
SC_ENTER(splice, AETHER_OP_SPLICE, P(fd_in, 0), P(len, 4), -1, 0)
SC_EXIT(splice, AETHER_OP_SPLICE)
#endif
#ifdef AETHER_SC_msync
SC_ENTER(msync, AETHER_OP_MSYNC, -1, P(len, 1), -1, AETHER_F_SYNC)
SC_EXIT(msync, AETHER_OP_MSYNC)
#endif
#ifdef AETHER_SC_syncfs
SC_ENTER(syncfs, AETHER_OP_SYNCFS, P(fd, 0), 0, -1, AETHER_F_SYNC)
SC_EXIT(syncfs, AETHER_OP_SYNCFS)
#endif
#ifdef AETHER_SC_sync
SC_ENTER(sync, AETHER_OP_SYNC, -1, 0, -1, AETHER_F_SYNC)
SC_EXIT(sync, AETHER_OP_SYNC)
#endif
#ifdef AETHER_SC_fallocate
SC_ENTER(fallocate, AETHER_OP_FALLOCATE, P(fd, 0), P(len, 3), P(offset, 2), 0)
SC_EXIT(fallocate, AETHER_OP_FALLOCATE)
#endif
/* libaio: io_submit's result is the number of iocbs queued, io_getevents' the number of
 * completions reaped; bytes is 0 (the iocbs are not read). Block requests submitted inside
 * io_submit are linked to it. */
#ifdef AETHER_SC_io_submit
SC_ENTER(io_submit, AETHER_OP_IO_SUBMIT, -1, 0, -1, 0)
SC_EXIT(io_submit, AETHER_OP_IO_SUBMIT)
#endif
#ifdef AETHER_SC_io_getevents
SC_ENTER(io_getevents, AETHER_OP_IO_GETEVENTS, -1, 0, -1, 0)
SC_EXIT(io_getevents, AETHER_OP_IO_GETEVENTS)
#endif

#ifdef AETHER_SC_RAW
    } /* switch (nr) */
    return AETHER_PASS;
}
#endif
#undef P
