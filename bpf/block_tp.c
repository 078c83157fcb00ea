// SPDX-License-Identifier: Apache-2.0
/* block_tp.c: the block layer of aether-rec on classic tracepoints, for kernels without
 * BTF (where block.c cannot know the layout of struct request).
 *
 * block_rq_insert (queued) -> block_rq_issue (sent to the device) -> block_rq_complete.
 * The tracepoints of the kernels we target carry no request pointer, so a request is
 * keyed by (dev, sector). pid/comm/cgroup are taken where the request is inserted or
 * issued (the submitter's context), never at completion (interrupt context). Queue time
 * (insert -> issue) and service time (issue -> complete) are kept apart: the event's lat
 * is queue + service, its queue column the queue part. A completion that covers only
 * part of the request (it can fire several times) moves the entry forward; the event is
 * emitted when the last piece completes, flagged AETHER_F_PARTIAL.
 * Parameters: BLK_MAP_SIZE, BLK_HAS_BYTES (insert/issue carry a bytes field),
 * BLK_HAS_ERROR (complete carries error), BLK_HAS_INSERT (block_rq_insert exists),
 * BLOCK_OP_MASK (bit n set: keep op code n), and those of aether_common.h.
 */
#include "aether_common.h"
#include "block_common.h"


struct blk_key_t {
    u32 dev;
    u32 pad;
    u64 sector;
};

struct blk_start_t {
    u64 ts_insert;
    u64 ts_issue;
    u64 cgroup;
    u64 bytes;
    u64 sector0;
    u32 pid;
    u32 tid;
    u32 remaining; /* sectors not yet completed */
    u32 flags;
    u8 op;
    char comm[AETHER_COMM_LEN];
};

/* LRU: requests whose completion we never see (front merges change the sector) must not
 * fill the map; an evicted request shows up as an unmatched completion. */
/* with filters, completions of requests we chose not to track are not "unmatched" */
#if AETHER_TASK_FILTERED || defined(BLOCK_OP_MASK)
#define BLK_FILTERED 1
#else
#define BLK_FILTERED 0
#endif

BPF_TABLE("lru_hash", struct blk_key_t, struct blk_start_t, blk_start, BLK_MAP_SIZE);

/* rwbs as written by blk_fill_rwbs(): [F]op[F][A][S][M], op one of R W D(E) F N */
static __always_inline void blk_parse_rwbs(const char *src, u8 *opp, u32 *flagsp)
{
    char r[8] = {};
    bpf_probe_read_kernel(&r, sizeof(r), src);
    u32 flags = 0;
    int at = 0;
    if (r[0] == 'F' && (r[1] == 'W' || r[1] == 'R' || r[1] == 'D' || r[1] == 'N' || r[1] == 'F')) {
        flags |= AETHER_F_PREFLUSH;
        at = 1;
    }
    char c = at ? r[1] : r[0];
    u8 op = AETHER_OP_OTHER;
    if (c == 'R')
        op = AETHER_OP_READ;
    else if (c == 'W')
        op = AETHER_OP_WRITE;
    else if (c == 'D')
        op = AETHER_OP_DISCARD;
    else if (c == 'F')
        op = AETHER_OP_FLUSH;
#pragma unroll
    for (int i = 1; i < 8; i++) {
        if (i <= at)
            continue;
        char f = r[i];
        if (f == 0)
            break;
        if (f == 'E' && i == at + 1 && op == AETHER_OP_DISCARD)
            op = AETHER_OP_SECURE_ERASE;
        else if (f == 'F')
            flags |= AETHER_F_FUA;
        else if (f == 'A')
            flags |= AETHER_F_RAHEAD;
        else if (f == 'S')
            flags |= AETHER_F_SYNC;
        else if (f == 'M')
            flags |= AETHER_F_META;
    }
    *opp = op;
    *flagsp = flags;
}

static __always_inline int blk_start_req(u32 dev, u64 sector, u32 nr_sector, u64 bytes,
                                         const char *rwbs, int inserted)
{
    u64 id = bpf_get_current_pid_tgid();
    if (!aether_task_wanted(id >> 32))
        return AETHER_PASS;
    struct blk_start_t s = {};
    blk_parse_rwbs(rwbs, &s.op, &s.flags);
    if (!blk_op_wanted(s.op))
        return AETHER_PASS;
    u64 now = bpf_ktime_get_ns();
    if (inserted) {
        s.ts_insert = now;
        s.flags |= AETHER_F_QUEUED;
    } else {
        s.ts_issue = now;
    }
    s.cgroup = bpf_get_current_cgroup_id();
    s.bytes = bytes;
    s.sector0 = sector;
    s.pid = id >> 32;
    s.tid = (u32)id;
    s.remaining = nr_sector;
    bpf_get_current_comm(&s.comm, sizeof(s.comm));
    struct blk_key_t key = {.dev = dev, .sector = sector};
    if (blk_start.update(&key, &s) != 0)
        aether_count(AETHER_C_BLK_START_FULL);
    return AETHER_PASS;
}

#ifdef BLK_HAS_BYTES
#define BLK_BYTES(a) ((u64)(a)->bytes)
#else
#define BLK_BYTES(a) ((u64)(a)->nr_sector << 9)
#endif

#ifdef BLK_HAS_INSERT
TRACEPOINT_PROBE(block, block_rq_insert)
{
    return blk_start_req(args->dev, args->sector, args->nr_sector, BLK_BYTES(args), args->rwbs, 1);
}
#endif

TRACEPOINT_PROBE(block, block_rq_issue)
{
    struct blk_key_t key = {.dev = args->dev, .sector = args->sector};
    struct blk_start_t *s = blk_start.lookup(&key);
    if (s) {
        s->ts_issue = bpf_ktime_get_ns(); /* a requeued request is issued again */
        return AETHER_PASS;
    }
    return blk_start_req(args->dev, args->sector, args->nr_sector, BLK_BYTES(args), args->rwbs, 0);
}

TRACEPOINT_PROBE(block, block_rq_complete)
{
    u64 now = bpf_ktime_get_ns();
    struct blk_key_t key = {.dev = args->dev, .sector = args->sector};
    struct blk_start_t *sp = blk_start.lookup(&key);
    if (!sp) {
        if (args->nr_sector == 0)
            aether_count(AETHER_C_BLK_NODATA); /* the empty request of a flush sequence */
        else if (!BLK_FILTERED)
            aether_count(AETHER_C_BLK_UNMATCHED);
        return AETHER_PASS;
    }
    struct blk_start_t s = *sp;
    u32 done = args->nr_sector;
    if (done > 0 && done < s.remaining) {
        /* partial completion: the request continues at sector + done */
        aether_count(AETHER_C_BLK_PARTIAL);
        s.remaining -= done;
        s.flags |= AETHER_F_PARTIAL;
        struct blk_key_t next = {.dev = key.dev, .sector = key.sector + done};
        blk_start.delete(&key);
        blk_start.update(&next, &s);
        return AETHER_PASS;
    }
    blk_start.delete(&key);
    u64 start = s.ts_insert ? s.ts_insert : s.ts_issue;
    if (start == 0 || start > now)
        return AETHER_PASS;
    u64 lat = now - start;
    if (aether_below_min_lat(lat)) {
        aether_count(AETHER_C_BELOW_MIN_LAT);
        return AETHER_PASS;
    }
    struct aether_event ev = {};
    ev.ts = start;
    ev.lat = lat;
    ev.offset = (s64)(s.sector0 << 9);
    ev.bytes = s.bytes;
#ifdef BLK_HAS_ERROR
    ev.result = args->error ? (s64)args->error : (s64)s.bytes;
#else
    ev.result = (s64)s.bytes;
#endif
    ev.queue = (s.ts_insert && s.ts_issue > s.ts_insert) ? s.ts_issue - s.ts_insert : 0;
    ev.cgroup = s.cgroup;
    ev.pid = s.pid;
    ev.tid = s.tid;
    ev.dev = key.dev;
    ev.fd = -1;
    ev.flags = s.flags;
    ev.cpu = bpf_get_smp_processor_id();
    ev.layer = AETHER_LAYER_BLOCK;
    ev.op = s.op;
    __builtin_memcpy(&ev.comm, s.comm, sizeof(ev.comm));
    aether_submit(args, &ev);
    return AETHER_PASS;
}
