/* syscall.c: the syscall layer of aether-rec.
 *
 * One sys_enter_X / sys_exit_X tracepoint pair per I/O syscall, paired per thread on
 * pid_tgid in a bounded hash. A syscall X is compiled in when AETHER_SC_X is defined
 * (the recorder defines those the running kernel's tracefs formats support).
 * Parameters: SC_MAP_SIZE (in-flight syscalls tracked), AETHER_MAX_IOV (iovecs summed
 * for readv-like calls), and those of aether_common.h.
 */
#include <uapi/linux/uio.h>
#include "aether_common.h"

/* tracefs declares preadv2/pwritev2's flags as rwf_t (include/linux/fs.h, not included) */
typedef int rwf_t;

#ifndef SC_MAP_SIZE
#define SC_MAP_SIZE 16384
#endif
#ifndef AETHER_MAX_IOV
#define AETHER_MAX_IOV 16
#endif

/* RWF_DSYNC / RWF_SYNC (uapi/linux/fs.h) */
#define AETHER_RWF_DSYNC 0x2
#define AETHER_RWF_SYNC  0x4

struct sc_start_t {
    u64 ts;
    s64 offset;
    u64 bytes;
    s32 fd;
    u32 flags;
    u8  op;
};

BPF_HASH(sc_start, u64, struct sc_start_t, SC_MAP_SIZE);

static __always_inline int sc_enter(u8 op, s32 fd, u64 bytes, s64 offset, u32 flags)
{
    u64 id = bpf_get_current_pid_tgid();
    u32 tgid = id >> 32;
    if (tgid == SELF_TGID || !aether_task_wanted(tgid))
        return 0;
    struct sc_start_t s = {};
    s.ts = bpf_ktime_get_ns();
    s.offset = offset;
    s.bytes = bytes;
    s.fd = fd;
    s.flags = flags;
    s.op = op;
    if (sc_start.update(&id, &s) != 0)
        aether_count(AETHER_C_SC_START_FULL);
    return 0;
}

static __always_inline int sc_exit(void *ctx, u8 op, long ret)
{
    u64 id = bpf_get_current_pid_tgid();
    struct sc_start_t *sp = sc_start.lookup(&id);
    if (!sp) {
        u32 tgid = id >> 32;
        if (tgid != SELF_TGID && aether_task_wanted(tgid))
            aether_count(AETHER_C_SC_UNMATCHED);
        return 0;
    }
    struct sc_start_t s = *sp;
    sc_start.delete(&id);
    if (s.op != op) {
        aether_count(AETHER_C_SC_OP_MISMATCH);
        return 0;
    }
    u64 lat = bpf_ktime_get_ns() - s.ts;
    if (MIN_LAT_NS > 0 && lat < MIN_LAT_NS) {
        aether_count(AETHER_C_BELOW_MIN_LAT);
        return 0;
    }
    struct aether_event ev = {};
    aether_fill_current(&ev, id, s.ts, lat, AETHER_LAYER_SYSCALL, op);
    ev.offset = s.offset;
    ev.bytes = s.bytes;
    ev.result = ret;
    ev.fd = s.fd;
    ev.flags = s.flags;
    aether_submit(ctx, &ev);
    return 0;
}

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

#define SC_EXIT(name, opcode) \
    TRACEPOINT_PROBE(syscalls, sys_exit_##name) { return sc_exit(args, opcode, args->ret); }

#ifdef AETHER_SC_read
TRACEPOINT_PROBE(syscalls, sys_enter_read) { return sc_enter(AETHER_OP_READ, args->fd, args->count, -1, 0); }
SC_EXIT(read, AETHER_OP_READ)
#endif
#ifdef AETHER_SC_write
TRACEPOINT_PROBE(syscalls, sys_enter_write) { return sc_enter(AETHER_OP_WRITE, args->fd, args->count, -1, 0); }
SC_EXIT(write, AETHER_OP_WRITE)
#endif
#ifdef AETHER_SC_pread64
TRACEPOINT_PROBE(syscalls, sys_enter_pread64) { return sc_enter(AETHER_OP_PREAD, args->fd, args->count, args->pos, 0); }
SC_EXIT(pread64, AETHER_OP_PREAD)
#endif
#ifdef AETHER_SC_pwrite64
TRACEPOINT_PROBE(syscalls, sys_enter_pwrite64) { return sc_enter(AETHER_OP_PWRITE, args->fd, args->count, args->pos, 0); }
SC_EXIT(pwrite64, AETHER_OP_PWRITE)
#endif
#ifdef AETHER_SC_readv
TRACEPOINT_PROBE(syscalls, sys_enter_readv) { return sc_enter(AETHER_OP_READV, args->fd, iov_bytes(args->vec, args->vlen), -1, 0); }
SC_EXIT(readv, AETHER_OP_READV)
#endif
#ifdef AETHER_SC_writev
TRACEPOINT_PROBE(syscalls, sys_enter_writev) { return sc_enter(AETHER_OP_WRITEV, args->fd, iov_bytes(args->vec, args->vlen), -1, 0); }
SC_EXIT(writev, AETHER_OP_WRITEV)
#endif
/* 64-bit kernels pass the whole offset in pos_l (pos_h is shifted out) */
#ifdef AETHER_SC_preadv
TRACEPOINT_PROBE(syscalls, sys_enter_preadv) { return sc_enter(AETHER_OP_PREADV, args->fd, iov_bytes(args->vec, args->vlen), (s64)args->pos_l, 0); }
SC_EXIT(preadv, AETHER_OP_PREADV)
#endif
#ifdef AETHER_SC_pwritev
TRACEPOINT_PROBE(syscalls, sys_enter_pwritev) { return sc_enter(AETHER_OP_PWRITEV, args->fd, iov_bytes(args->vec, args->vlen), (s64)args->pos_l, 0); }
SC_EXIT(pwritev, AETHER_OP_PWRITEV)
#endif
#ifdef AETHER_SC_preadv2
TRACEPOINT_PROBE(syscalls, sys_enter_preadv2) { return sc_enter(AETHER_OP_PREADV2, args->fd, iov_bytes(args->vec, args->vlen), (s64)args->pos_l, rwf_flags(args->flags)); }
SC_EXIT(preadv2, AETHER_OP_PREADV2)
#endif
#ifdef AETHER_SC_pwritev2
TRACEPOINT_PROBE(syscalls, sys_enter_pwritev2) { return sc_enter(AETHER_OP_PWRITEV2, args->fd, iov_bytes(args->vec, args->vlen), (s64)args->pos_l, rwf_flags(args->flags)); }
SC_EXIT(pwritev2, AETHER_OP_PWRITEV2)
#endif
#ifdef AETHER_SC_fsync
TRACEPOINT_PROBE(syscalls, sys_enter_fsync) { return sc_enter(AETHER_OP_FSYNC, args->fd, 0, -1, AETHER_F_SYNC); }
SC_EXIT(fsync, AETHER_OP_FSYNC)
#endif
#ifdef AETHER_SC_fdatasync
TRACEPOINT_PROBE(syscalls, sys_enter_fdatasync) { return sc_enter(AETHER_OP_FDATASYNC, args->fd, 0, -1, AETHER_F_SYNC); }
SC_EXIT(fdatasync, AETHER_OP_FDATASYNC)
#endif
#ifdef AETHER_SC_sync_file_range
TRACEPOINT_PROBE(syscalls, sys_enter_sync_file_range) { return sc_enter(AETHER_OP_SYNC_FILE_RANGE, args->fd, args->nbytes, args->offset, 0); }
SC_EXIT(sync_file_range, AETHER_OP_SYNC_FILE_RANGE)
#endif
#ifdef AETHER_SC_sendfile64
TRACEPOINT_PROBE(syscalls, sys_enter_sendfile64) { return sc_enter(AETHER_OP_SENDFILE, args->in_fd, args->count, -1, 0); }
SC_EXIT(sendfile64, AETHER_OP_SENDFILE)
#endif
#ifdef AETHER_SC_copy_file_range
TRACEPOINT_PROBE(syscalls, sys_enter_copy_file_range) { return sc_enter(AETHER_OP_COPY_FILE_RANGE, args->fd_in, args->len, -1, 0); }
SC_EXIT(copy_file_range, AETHER_OP_COPY_FILE_RANGE)
#endif
#ifdef AETHER_SC_splice
TRACEPOINT_PROBE(syscalls, sys_enter_splice) { return sc_enter(AETHER_OP_SPLICE, args->fd_in, args->len, -1, 0); }
SC_EXIT(splice, AETHER_OP_SPLICE)
#endif
#ifdef AETHER_SC_msync
TRACEPOINT_PROBE(syscalls, sys_enter_msync) { return sc_enter(AETHER_OP_MSYNC, -1, args->len, -1, AETHER_F_SYNC); }
SC_EXIT(msync, AETHER_OP_MSYNC)
#endif
#ifdef AETHER_SC_syncfs
TRACEPOINT_PROBE(syscalls, sys_enter_syncfs) { return sc_enter(AETHER_OP_SYNCFS, args->fd, 0, -1, AETHER_F_SYNC); }
SC_EXIT(syncfs, AETHER_OP_SYNCFS)
#endif
#ifdef AETHER_SC_sync
TRACEPOINT_PROBE(syscalls, sys_enter_sync) { return sc_enter(AETHER_OP_SYNC, -1, 0, -1, AETHER_F_SYNC); }
SC_EXIT(sync, AETHER_OP_SYNC)
#endif
#ifdef AETHER_SC_fallocate
TRACEPOINT_PROBE(syscalls, sys_enter_fallocate) { return sc_enter(AETHER_OP_FALLOCATE, args->fd, args->len, args->offset, 0); }
SC_EXIT(fallocate, AETHER_OP_FALLOCATE)
#endif
