// SPDX-License-Identifier: Apache-2.0
/* io_uring.c: the io_uring layer of aether-rec.
 *
 * io_uring requests never pass through read/write syscalls: the application fills a
 * submission queue and calls io_uring_enter (or a kernel thread polls the queue), and
 * reaps completions from a ring. A request is followed from io_uring_submit_req (or
 * io_uring_submit_sqe on older kernels) to io_uring_complete, keyed by the kernel's
 * request pointer where both tracepoints carry it (user_data is the application's and
 * need not be unique), else by ring and user_data (URING_KEY_USER_DATA). Its fd comes
 * from io_uring_file_get, io-wq punts from io_uring_queue_async_work (AETHER_F_ASYNC).
 * Only storage opcodes are followed (reads, writes, syncs, fallocate, splice); their
 * codes are the stable IORING_OP_* of include/uapi/linux/io_uring.h. The event's bytes
 * and result are the completion's res (the tracepoints do not carry the length asked).
 * While a thread submits, its current request is kept in uring_cur (aether_common.h) so
 * that block requests issued inline are linked to it; io_uring_enter's exit clears it.
 * Parameters: URING_MAP_SIZE, URING_SUBMIT_REQ / URING_SUBMIT_SQE (which submit
 * tracepoint), URING_KEY_USER_DATA, URING_HAS_FILE_GET, URING_HAS_ASYNC,
 * URING_HAS_SQ_THREAD, URING_HAS_ENTER_EXIT, and those of aether_common.h.
 */
#include "aether_common.h"

#ifndef URING_MAP_SIZE
#define URING_MAP_SIZE 16384
#endif

struct uring_req_t {
    u64 ts;
    u64 cgroup;
    u32 pid;
    u32 tid;
    s32 fd;
    u32 flags;
    u8 op;
    char comm[AETHER_COMM_LEN];
};

BPF_HASH(uring_req, u64, struct uring_req_t, URING_MAP_SIZE);

/* IORING_OP_* -> our op code; 0: not followed */
static __always_inline u8 uring_op(u8 opcode)
{
    switch (opcode) {
    case 1: return AETHER_OP_READV;           /* IORING_OP_READV */
    case 2: return AETHER_OP_WRITEV;          /* IORING_OP_WRITEV */
    case 3: return AETHER_OP_FSYNC;           /* IORING_OP_FSYNC */
    case 4: return AETHER_OP_READ;            /* IORING_OP_READ_FIXED */
    case 5: return AETHER_OP_WRITE;           /* IORING_OP_WRITE_FIXED */
    case 8: return AETHER_OP_SYNC_FILE_RANGE; /* IORING_OP_SYNC_FILE_RANGE */
    case 17: return AETHER_OP_FALLOCATE;      /* IORING_OP_FALLOCATE */
    case 22: return AETHER_OP_READ;           /* IORING_OP_READ */
    case 23: return AETHER_OP_WRITE;          /* IORING_OP_WRITE */
    case 30: return AETHER_OP_SPLICE;         /* IORING_OP_SPLICE */
    default: return 0;
    }
}

#ifdef URING_KEY_USER_DATA
#define URING_KEY(a) ((u64)(a)->ctx ^ (u64)(a)->user_data)
#else
#define URING_KEY(a) ((u64)(a)->req)
#endif

static __always_inline int uring_submit(u64 key, u8 opcode, u32 sqpoll)
{
    u8 op = uring_op(opcode);
    if (!op)
        return AETHER_PASS;
    u64 id = bpf_get_current_pid_tgid();
    u32 tgid = id >> 32;
    if (tgid == SELF_TGID || !aether_task_wanted(tgid))
        return AETHER_PASS;
    struct uring_req_t r = {};
    r.ts = bpf_ktime_get_ns();
    r.cgroup = bpf_get_current_cgroup_id();
    r.pid = tgid;
    r.tid = (u32)id;
    r.fd = -1;
    r.flags = sqpoll ? AETHER_F_SQPOLL : 0;
    r.op = op;
    bpf_get_current_comm(&r.comm, sizeof(r.comm));
    if (uring_req.update(&key, &r) != 0) {
        aether_count(AETHER_C_URING_START_FULL);
        return AETHER_PASS;
    }
    struct uring_cur_t cur = {.ts = r.ts, .fd = -1};
    uring_cur.update(&id, &cur);
    return AETHER_PASS;
}

#ifdef URING_HAS_SQ_THREAD
#define URING_SQPOLL(a) ((a)->sq_thread)
#else
#define URING_SQPOLL(a) 0
#endif

#ifdef URING_SUBMIT_REQ
TRACEPOINT_PROBE(io_uring, io_uring_submit_req)
{
    return uring_submit(URING_KEY(args), args->opcode, URING_SQPOLL(args));
}
#else
TRACEPOINT_PROBE(io_uring, io_uring_submit_sqe)
{
    return uring_submit(URING_KEY(args), args->opcode, URING_SQPOLL(args));
}
#endif

#ifdef URING_HAS_FILE_GET
TRACEPOINT_PROBE(io_uring, io_uring_file_get)
{
    u64 key = URING_KEY(args);
    struct uring_req_t *r = uring_req.lookup(&key);
    if (r) {
        r->fd = args->fd;
        u64 id = bpf_get_current_pid_tgid();
        struct uring_cur_t *cur = uring_cur.lookup(&id);
        if (cur && cur->ts == r->ts)
            cur->fd = args->fd;
    }
    return AETHER_PASS;
}
#endif

#ifdef URING_HAS_ASYNC
TRACEPOINT_PROBE(io_uring, io_uring_queue_async_work)
{
    u64 key = URING_KEY(args);
    struct uring_req_t *r = uring_req.lookup(&key);
    if (r)
        r->flags |= AETHER_F_ASYNC;
    return AETHER_PASS;
}
#endif

TRACEPOINT_PROBE(io_uring, io_uring_complete)
{
    u64 key = URING_KEY(args);
    struct uring_req_t *rp = uring_req.lookup(&key);
    if (!rp)
        return AETHER_PASS; /* not a followed opcode, or submitted before we started */
    struct uring_req_t r = *rp;
    uring_req.delete(&key);
    u64 now = bpf_ktime_get_ns();
    u64 lat = now > r.ts ? now - r.ts : 0;
    if (aether_below_min_lat(lat)) {
        aether_count(AETHER_C_BELOW_MIN_LAT);
        return AETHER_PASS;
    }
    struct aether_event ev = {};
    ev.ts = r.ts;
    ev.lat = lat;
    ev.offset = -1;
    ev.result = args->res;
    ev.bytes = args->res > 0 ? (u64)args->res : 0;
    ev.cgroup = r.cgroup;
    ev.pid = r.pid;
    ev.tid = r.tid;
    ev.fd = r.fd;
    ev.flags = r.flags;
    ev.cpu = bpf_get_smp_processor_id();
    ev.layer = AETHER_LAYER_IO_URING;
    ev.op = r.op;
    __builtin_memcpy(&ev.comm, r.comm, sizeof(ev.comm));
    aether_submit(args, &ev);
    return AETHER_PASS;
}

#ifdef URING_HAS_ENTER_EXIT
/* the submitting call is over: later block I/O of this thread is not its requests' */
TRACEPOINT_PROBE(syscalls, sys_exit_io_uring_enter)
{
    u64 id = bpf_get_current_pid_tgid();
    uring_cur.delete(&id);
    return AETHER_PASS;
}
#endif
