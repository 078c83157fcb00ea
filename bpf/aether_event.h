/* aether_event.h: the one event record every aether-rec BPF program emits.
 *
 * Shared by all programs in bpf/ and mirrored byte for byte by
 * aether_rec.schema.KERNEL_EVENT_DTYPE (checked by tests/test_recorder_units.py).
 * All fields little-endian on the machines we target; 96 bytes, 8-aligned.
 */
#ifndef AETHER_EVENT_H
#define AETHER_EVENT_H

#define AETHER_COMM_LEN 16

/* layers (aether_rec.schema.LAYERS) */
#define AETHER_LAYER_SYSCALL 1
#define AETHER_LAYER_BLOCK   2
#define AETHER_LAYER_VFS     3

/* ops (aether_rec.schema.OPS): stable codes, only append */
#define AETHER_OP_READ            1
#define AETHER_OP_WRITE           2
#define AETHER_OP_PREAD           3
#define AETHER_OP_PWRITE          4
#define AETHER_OP_READV           5
#define AETHER_OP_WRITEV          6
#define AETHER_OP_PREADV          7
#define AETHER_OP_PWRITEV         8
#define AETHER_OP_PREADV2         9
#define AETHER_OP_PWRITEV2        10
#define AETHER_OP_FSYNC           11
#define AETHER_OP_FDATASYNC       12
#define AETHER_OP_SYNC_FILE_RANGE 13
#define AETHER_OP_SENDFILE        14
#define AETHER_OP_COPY_FILE_RANGE 15
#define AETHER_OP_SPLICE          16
#define AETHER_OP_MSYNC           17
#define AETHER_OP_SYNCFS          18
#define AETHER_OP_SYNC            19
#define AETHER_OP_FALLOCATE       20
#define AETHER_OP_FLUSH           32
#define AETHER_OP_DISCARD         33
#define AETHER_OP_WRITE_ZEROES    34
#define AETHER_OP_SECURE_ERASE    35
#define AETHER_OP_OTHER           36

/* flags (aether_rec.schema.FLAGS) */
#define AETHER_F_SYNC     (1u << 0)
#define AETHER_F_META     (1u << 1)
#define AETHER_F_FUA      (1u << 2)
#define AETHER_F_PREFLUSH (1u << 3)
#define AETHER_F_RAHEAD   (1u << 4)
#define AETHER_F_DIRECT   (1u << 5)
#define AETHER_F_PARTIAL  (1u << 6)
#define AETHER_F_QUEUED   (1u << 7)

struct aether_event {
    u64 ts;       /* start, CLOCK_MONOTONIC ns (bpf_ktime_get_ns) */
    u64 lat;      /* end - start, ns */
    s64 offset;   /* file offset or device byte offset, -1 if none */
    u64 bytes;    /* bytes requested */
    s64 result;   /* bytes done or -errno */
    u64 queue;    /* block: insert -> issue, ns */
    u64 cgroup;   /* cgroup v2 id */
    u32 pid;      /* tgid */
    u32 tid;
    u32 dev;      /* major << 20 | minor */
    s32 fd;
    u32 flags;
    u16 cpu;
    u8  layer;
    u8  op;
    char comm[AETHER_COMM_LEN];
};

#endif /* AETHER_EVENT_H */
