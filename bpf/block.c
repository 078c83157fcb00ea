// SPDX-License-Identifier: Apache-2.0
/* block.c: the block layer of aether-rec, on raw tracepoints keyed by the request.
 *
 * Raw tracepoints hand over the struct request pointer itself: a key that survives front
 * merges and requeues, and a hook that the kernel runs under a guard of its own, so a
 * completion arriving in interrupt context while another aether program runs on that CPU
 * is not skipped (classic tracepoint and kprobe programs share one per-CPU guard, and a
 * completion they skip is lost without a trace). The request's fields are read at the
 * running kernel's offsets, found in its BTF by aether_rec.recorder.btf and passed as
 * -D flags (RQ_OFF_*, Q_OFF_DISK, DISK_OFF_*, KREQ_OP_*, KREQ_BIT_*); kernels without
 * BTF use block_tp.c.
 *
 * A request is first seen where it is made, in the submitter's context: block_io_start
 * (BLK_HAS_IO_START, kernels 6.5+), else block_rq_insert, else block_rq_issue. pid,
 * comm, cgroup, the syscall or io_uring request it belongs to (link, fd) and whether the
 * task filters want it are taken there, for every request, so that a request dispatched
 * later from another task's context keeps its submitter. Queue time runs from first
 * sight to issue, service time from issue to completion; lat is both. A completion that
 * covers only part of the request waits for the rest (AETHER_F_PARTIAL).
 *
 * Flushes: a PREFLUSH bio (fsync, fdatasync, a journal commit) records its submitter as
 * the flush owner of the disk (block_bio_queue); the device flush request the kernel
 * then issues, often from a kworker, is recorded as op flush, attributed to that owner,
 * its latency counted from the owner's bio. The empty request that carried the PREFLUSH
 * completes untracked and is counted as AETHER_C_BLK_NODATA, not as a loss.
 * Parameters: BLK_MAP_SIZE, RQ_ARG_INSERT/ISSUE/COMPLETE/IO_START, BIO_ARG_QUEUE (which
 * raw tracepoint argument is the request or bio), BLK_ERR_IS_ERRNO (the completion's
 * error is an errno, not a blk_status_t), BIO_OFF_* (bio layout), BLOCK_OP_MASK.
 */
#include "aether_common.h"
#include "block_common.h"


struct blk_req_t {
    u64 ts_first;
    u64 ts_issue;
    u64 cgroup;
    u64 bytes;
    u64 sector;
    u64 link;
    u32 pid;
    u32 tid;
    u32 flags;
    s32 fd;
    u32 dev;
    u8 op;
    u8 wanted;
    char comm[AETHER_COMM_LEN];
};

struct blk_owner_t {
    u64 ts;
    u64 cgroup;
    u64 link;
    u32 pid;
    u32 tid;
    s32 fd;
    char comm[AETHER_COMM_LEN];
};

BPF_HASH(blk_req, u64, struct blk_req_t, BLK_MAP_SIZE);
BPF_HASH(blk_flush_owner, u32, struct blk_owner_t, 1024);

static __always_inline u64 rd_u64(const void *base, int off)
{
    u64 v = 0;
    bpf_probe_read_kernel(&v, sizeof(v), (const char *)base + off);
    return v;
}

static __always_inline u32 rd_u32(const void *base, int off)
{
    u32 v = 0;
    bpf_probe_read_kernel(&v, sizeof(v), (const char *)base + off);
    return v;
}

/* major << 20 | minor of a gendisk, as the classic tracepoints report it */
static __always_inline u32 disk_dev(const void *disk)
{
    if (!disk)
        return 0;
    return (rd_u32(disk, DISK_OFF_MAJOR) << 20) | (rd_u32(disk, DISK_OFF_FIRST_MINOR) & 0xFFFFF);
}

static __always_inline u32 rq_dev(const void *rq)
{
#ifdef RQ_OFF_DISK
    return disk_dev((const void *)rd_u64(rq, RQ_OFF_DISK));
#else
    const void *q = (const void *)rd_u64(rq, RQ_OFF_Q);
    return q ? disk_dev((const void *)rd_u64(q, Q_OFF_DISK)) : 0;
#endif
}

/* our op and flags from the kernel's cmd_flags (op in the low 8 bits, flags above) */
static __always_inline u8 blk_op(u32 cmd, u32 *flags)
{
    u32 kop = cmd & 0xFF;
    u32 f = 0;
    if (cmd & (1u << KREQ_BIT_SYNC))
        f |= AETHER_F_SYNC;
    if (cmd & (1u << KREQ_BIT_META))
        f |= AETHER_F_META;
    if (cmd & (1u << KREQ_BIT_FUA))
        f |= AETHER_F_FUA;
    if (cmd & (1u << KREQ_BIT_PREFLUSH))
        f |= AETHER_F_PREFLUSH;
    if (cmd & (1u << KREQ_BIT_RAHEAD))
        f |= AETHER_F_RAHEAD;
    *flags = f;
    if (kop == KREQ_OP_READ)
        return AETHER_OP_READ;
    if (kop == KREQ_OP_WRITE)
        return AETHER_OP_WRITE;
    if (kop == KREQ_OP_FLUSH)
        return AETHER_OP_FLUSH;
    if (kop == KREQ_OP_DISCARD)
        return AETHER_OP_DISCARD;
    if (kop == KREQ_OP_SECURE_ERASE)
        return AETHER_OP_SECURE_ERASE;
    if (kop == KREQ_OP_WRITE_ZEROES)
        return AETHER_OP_WRITE_ZEROES;
    return AETHER_OP_OTHER;
}

#define BLK_FIRST 0
#define BLK_INSERT 1
#define BLK_ISSUE 2

/* A request seen at stage: track it when new (attributed to the current task, or for a
 * device flush to the disk's flush owner), else note the stage's time. */
static __always_inline void blk_seen(const void *rq, int stage)
{
    u64 key = (u64)rq;
    u64 now = bpf_ktime_get_ns();
    struct blk_req_t *cur = blk_req.lookup(&key);
    if (cur && stage != BLK_FIRST) {
        if (stage == BLK_INSERT && !(cur->flags & AETHER_F_QUEUED))
            cur->flags |= AETHER_F_QUEUED;
        if (stage == BLK_ISSUE) {
            cur->ts_issue = now; /* a requeued request is issued again */
            /* bios merged in since first sight (front merges move the start): the
             * request as the device gets it */
            cur->bytes = rd_u32(rq, RQ_OFF_DATA_LEN);
            cur->sector = rd_u64(rq, RQ_OFF_SECTOR);
        }
        return;
    }
    /* new (BLK_FIRST always starts a request's life: a stale entry is replaced) */
    u32 cmd = rd_u32(rq, RQ_OFF_CMD_FLAGS);
    u32 len = rd_u32(rq, RQ_OFF_DATA_LEN);
    struct blk_req_t r = {};
    r.op = blk_op(cmd, &r.flags);
    if (len == 0 && r.op != AETHER_OP_FLUSH)
        return; /* the empty carrier of a PREFLUSH: its flush is the device's flush request */
    r.bytes = len;
    r.sector = rd_u64(rq, RQ_OFF_SECTOR);
    r.dev = rq_dev(rq);
    r.ts_first = now;
    if (stage == BLK_ISSUE)
        r.ts_issue = now;
    else
        r.flags |= AETHER_F_QUEUED;
    int owned = 0;
    if (r.op == AETHER_OP_FLUSH) {
        u32 dev = r.dev;
        struct blk_owner_t *o = blk_flush_owner.lookup(&dev);
        if (o) {
            r.ts_first = o->ts < now ? o->ts : now;
            r.flags |= AETHER_F_QUEUED;
            r.cgroup = o->cgroup;
            r.link = o->link;
            r.pid = o->pid;
            r.tid = o->tid;
            r.fd = o->fd;
            __builtin_memcpy(&r.comm, o->comm, sizeof(r.comm));
            r.wanted = 1; /* owners are only recorded for wanted tasks */
            blk_flush_owner.delete(&dev);
            owned = 1;
        }
    }
    if (!owned) {
        u64 id = bpf_get_current_pid_tgid();
        r.pid = id >> 32;
        r.tid = (u32)id;
        r.cgroup = bpf_get_current_cgroup_id();
        r.link = aether_link(id, &r.fd);
        bpf_get_current_comm(&r.comm, sizeof(r.comm));
        r.wanted = aether_task_wanted(r.pid) && blk_op_wanted(r.op);
    }
    if (blk_req.update(&key, &r) != 0 && r.wanted)
        aether_count(AETHER_C_BLK_START_FULL);
}

#ifdef BLK_HAS_IO_START
RAW_TRACEPOINT_PROBE(block_io_start)
{
    blk_seen((const void *)ctx->args[RQ_ARG_IO_START], BLK_FIRST);
    return 0;
}
#endif

#ifdef BLK_HAS_INSERT
RAW_TRACEPOINT_PROBE(block_rq_insert)
{
    blk_seen((const void *)ctx->args[RQ_ARG_INSERT], BLK_INSERT);
    return 0;
}
#endif

RAW_TRACEPOINT_PROBE(block_rq_issue)
{
    blk_seen((const void *)ctx->args[RQ_ARG_ISSUE], BLK_ISSUE);
    return 0;
}

/* blk_status_t -> errno for the codes a completion carries (include/linux/blk_types.h) */
static __always_inline s64 blk_errno(s64 err)
{
#ifdef BLK_ERR_IS_ERRNO
    return err > 0 ? -err : err;
#else
    switch (err) {
    case 1: return -95;  /* NOTSUPP: EOPNOTSUPP */
    case 2: return -110; /* TIMEOUT: ETIMEDOUT */
    case 3: return -28;  /* NOSPC: ENOSPC */
    case 7: return -61;  /* MEDIUM: ENODATA */
    case 9: return -12;  /* RESOURCE: ENOMEM */
    case 12: return -11; /* AGAIN: EAGAIN */
    default: return -5;  /* IOERR and the rest: EIO */
    }
#endif
}

RAW_TRACEPOINT_PROBE(block_rq_complete)
{
    const void *rq = (const void *)ctx->args[RQ_ARG_COMPLETE];
    s64 err = (s64)(s32)ctx->args[RQ_ARG_COMPLETE + 1];
    u32 nr_bytes = (u32)ctx->args[RQ_ARG_COMPLETE + 2];
    u64 now = bpf_ktime_get_ns();
    u64 key = (u64)rq;
    struct blk_req_t *rp = blk_req.lookup(&key);
    if (!rp) {
        if (rd_u32(rq, RQ_OFF_DATA_LEN) == 0)
            aether_count(AETHER_C_BLK_NODATA);
        else
            aether_count(AETHER_C_BLK_UNMATCHED);
        return 0;
    }
    u32 left = rd_u32(rq, RQ_OFF_DATA_LEN); /* before this completion is applied */
    if (nr_bytes > 0 && nr_bytes < left && !err) {
        aether_count(AETHER_C_BLK_PARTIAL);
        rp->flags |= AETHER_F_PARTIAL;
        return 0;
    }
    struct blk_req_t r = *rp;
    blk_req.delete(&key);
    if (!r.wanted || r.ts_first > now)
        return 0;
    u64 lat = now - r.ts_first;
    if (aether_below_min_lat(lat)) {
        aether_count(AETHER_C_BELOW_MIN_LAT);
        return 0;
    }
    struct aether_event ev = {};
    ev.ts = r.ts_first;
    ev.lat = lat;
    ev.offset = r.op == AETHER_OP_FLUSH ? -1 : (s64)(r.sector << 9);
    ev.bytes = r.bytes;
    ev.result = err ? blk_errno(err) : (s64)r.bytes;
    ev.queue = (r.ts_issue > r.ts_first) ? r.ts_issue - r.ts_first : 0;
    ev.cgroup = r.cgroup;
    ev.link = r.link;
    ev.pid = r.pid;
    ev.tid = r.tid;
    ev.dev = r.dev;
    ev.fd = r.link ? r.fd : -1;
    ev.flags = r.flags;
    ev.cpu = bpf_get_smp_processor_id();
    ev.layer = AETHER_LAYER_BLOCK;
    ev.op = r.op;
    __builtin_memcpy(&ev.comm, r.comm, sizeof(ev.comm));
    aether_submit(ctx, &ev);
    return 0;
}

/* A bio asking for a cache flush (fsync, fdatasync, a journal commit): its submitter owns
 * the next device flush of that disk. */
RAW_TRACEPOINT_PROBE(block_bio_queue)
{
    const void *bio = (const void *)ctx->args[BIO_ARG_QUEUE];
    u32 opf = rd_u32(bio, BIO_OFF_OPF);
    if (!(opf & (1u << KREQ_BIT_PREFLUSH)))
        return 0;
    u64 id = bpf_get_current_pid_tgid();
    if (!aether_task_wanted(id >> 32))
        return 0;
#ifdef BIO_OFF_DISK
    u32 dev = disk_dev((const void *)rd_u64(bio, BIO_OFF_DISK));
#else
    const void *bdev = (const void *)rd_u64(bio, BIO_OFF_BDEV);
    u32 dev = bdev ? disk_dev((const void *)rd_u64(bdev, BDEV_OFF_DISK)) : 0;
#endif
    struct blk_owner_t *cur = blk_flush_owner.lookup(&dev);
    if (cur)
        return 0; /* an earlier flusher still waits: the next flush serves it first */
    struct blk_owner_t o = {};
    o.ts = bpf_ktime_get_ns();
    o.cgroup = bpf_get_current_cgroup_id();
    o.pid = id >> 32;
    o.tid = (u32)id;
    o.link = aether_link(id, &o.fd);
    bpf_get_current_comm(&o.comm, sizeof(o.comm));
    blk_flush_owner.update(&dev, &o);
    return 0;
}
