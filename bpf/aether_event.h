// SPDX-License-Identifier: Apache-2.0
/* aether_event.h: the one event record every aether-rec BPF program emits.
 *
 * Shared by all programs in bpf/ and mirrored byte for byte by
 * aether_rec.schema.KERNEL_EVENT_DTYPE (checked by tests/test_recorder_units.py).
 * All fields little-endian on the machines we target; 112 bytes, 8-aligned.
 * Every #define below is checked against aether_rec.schema by tests/test_recorder_units.py.
 */
#ifndef AETHER_EVENT_H
#define AETHER_EVENT_H

#define AETHER_COMM_LEN 16

/* layers (aether_rec.schema.LAYERS) */
#define AETHER_LAYER_SYSCALL 1
#define AETHER_LAYER_BLOCK   2
#define AETHER_LAYER_VFS     3
#define AETHER_LAYER_IO_URING 4

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
#define AETHER_OP_IO_SUBMIT       21
#define AETHER_OP_IO_GETEVENTS    22
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
#define AETHER_F_ASYNC    (1u << 8)
#define AETHER_F_SQPOLL   (1u << 9)

struct aether_event {
    u64 ts;       /* start, CLOCK_MONOTONIC ns (bpf_ktime_get_ns) */
    u64 lat;      /* end - start, ns */
    s64 offset;   /* file offset or device byte offset, -1 if none */
    u64 bytes;    /* bytes requested */
    s64 result;   /* bytes done or -errno */
    u64 queue;    /* block: insert -> issue, ns */
    u64 cgroup;   /* cgroup v2 id */
    u64 link;     /* block: ts of the syscall or io_uring request (same tid) it was
                   * submitted for, 0 if none */
    u32 pid;      /* tgid */
    u32 tid;
    u32 dev;      /* major << 20 | minor */
    s32 fd;
    u32 flags;
    u32 pages_missed; /* syscall reads: pages the read had to add to the page cache */
    u32 pad;
    u16 cpu;
    u8  layer;
    u8  op;
    char comm[AETHER_COMM_LEN];
};

/* The name records of bpf/names.c (a second output, "names"): what the kernel said when
 * a file descriptor was made, copied, closed, or the working directory changed, so that
 * user space knows which file an fd was at the time of each I/O. Mirrored by
 * aether_rec.schema.KERNEL_NAME_DTYPE; 288 bytes. */
#define AETHER_PATH_LEN 256

#define AETHER_NAME_OPEN        1 /* fd = new fd, arg = dirfd, flags = open flags, path */
#define AETHER_NAME_CLOSE       2 /* fd closed */
#define AETHER_NAME_DUP         3 /* fd = new fd, arg = the fd it copies */
#define AETHER_NAME_CHDIR       4 /* path: the new working directory (may be relative) */
#define AETHER_NAME_FCHDIR      5 /* arg: the fd that is the new working directory */
#define AETHER_NAME_PIPE        6 /* fd, arg: the two ends */
#define AETHER_NAME_SOCKET      7 /* fd (and arg for socketpair, else -1) */
#define AETHER_NAME_FORK        8 /* pid: the parent, arg: the child (fds and cwd copied) */
#define AETHER_NAME_CLOSE_RANGE 9 /* fd .. arg closed */
#define AETHER_NAME_EXIT        10 /* the main thread (tid == pid) exited: the process is going */

struct aether_name {
    u64 ts;
    u32 pid;
    u32 tid;
    s32 fd;
    s32 arg;
    u32 flags;
    u8  kind;
    u8  pad[3];
    char path[AETHER_PATH_LEN];
};

#endif /* AETHER_EVENT_H */
