// SPDX-License-Identifier: Apache-2.0
/* vfs.c: the vfs layer of aether-rec (kernels with kprobes).
 *
 * A kprobe/kretprobe pair on vfs_read, vfs_write and vfs_fsync_range, paired per thread
 * on pid_tgid in a bounded hash: the file-system layer's view of every read, write and
 * sync, whatever syscall (or kernel path) led there. An entry remembers the syscall in
 * flight (aether_link); a return inside another one drops the entry instead of pairing it
 * (a kretprobe the kernel skipped left it behind). Only the functions' arguments are
 * read, never fields of struct file, so headers that do not match the running kernel
 * cannot mislead it. bcc attaches kprobe__X / kretprobe__X functions by their names.
 * Compiled in when the recorder's feature probe finds kprobes and these functions
 * traceable (aether_rec.recorder.probes.probe_vfs). Parameter: VFS_MAP_SIZE.
 */
#include "aether_common.h"

#ifndef VFS_MAP_SIZE
#define VFS_MAP_SIZE 16384
#endif

struct vfs_start_t {
    u64 ts;
    s64 offset;
    u64 bytes;
    u64 link;  /* the syscall (or io_uring request) in flight at the entry, 0 if none */
    u8  op;
};

BPF_HASH(vfs_start, u64, struct vfs_start_t, VFS_MAP_SIZE);

static __always_inline int vfs_enter(u8 op, u64 bytes, s64 offset)
{
    u64 id = bpf_get_current_pid_tgid();
    u32 tgid = id >> 32;
    if (tgid == SELF_TGID || !aether_task_wanted(tgid))
        return AETHER_PASS;
    struct vfs_start_t s = {};
    s32 fd = -1;
    s.ts = bpf_ktime_get_ns();
    s.offset = offset;
    s.bytes = bytes;
    s.link = aether_link(id, &fd);
    s.op = op;
    if (vfs_start.update(&id, &s) != 0)
        aether_count(AETHER_C_VFS_START_FULL);
    return AETHER_PASS;
}

static __always_inline int vfs_exit(struct pt_regs *ctx, u8 op)
{
    u64 id = bpf_get_current_pid_tgid();
    struct vfs_start_t *sp = vfs_start.lookup(&id);
    if (!sp) {
        u32 tgid = id >> 32;
        if (tgid != SELF_TGID && aether_task_wanted(tgid))
            aether_count(AETHER_C_VFS_UNMATCHED);
        return AETHER_PASS;
    }
    struct vfs_start_t s = *sp;
    vfs_start.delete(&id);
    if (s.op != op)
        return AETHER_PASS;  /* a nested call of another function: not this one's return */
    s32 fd = -1;
    if (s.link != aether_link(id, &fd)) {
        /* the entry is an earlier call's whose return the kernel did not run this program
         * for (a recursion miss, counted as a loss): pairing it would make one false event */
        aether_count(AETHER_C_VFS_UNMATCHED);
        return AETHER_PASS;
    }
    u64 lat = bpf_ktime_get_ns() - s.ts;
    if (aether_below_min_lat(lat)) {
        aether_count(AETHER_C_BELOW_MIN_LAT);
        return AETHER_PASS;
    }
    struct aether_event ev = {};
    aether_fill_current(&ev, id, s.ts, lat, AETHER_LAYER_VFS, op);
    ev.offset = s.offset;
    ev.bytes = s.bytes;
    ev.result = PT_REGS_RC(ctx);
    ev.fd = -1;
    aether_submit(ctx, &ev);
    return AETHER_PASS;
}

static __always_inline s64 vfs_pos(loff_t *pos)
{
    s64 off = -1;
    if (pos)
        bpf_probe_read_kernel(&off, sizeof(off), pos);
    return off;
}

/* ssize_t vfs_read(struct file *, char __user *, size_t, loff_t *) */
int VFS_ENTRY(vfs_read)(struct pt_regs *ctx, void *file, void *buf, size_t count, loff_t *pos)
{
    return vfs_enter(AETHER_OP_READ, count, vfs_pos(pos));
}
int VFS_RETURN(vfs_read)(struct pt_regs *ctx) { return vfs_exit(ctx, AETHER_OP_READ); }

/* ssize_t vfs_write(struct file *, const char __user *, size_t, loff_t *) */
int VFS_ENTRY(vfs_write)(struct pt_regs *ctx, void *file, void *buf, size_t count, loff_t *pos)
{
    return vfs_enter(AETHER_OP_WRITE, count, vfs_pos(pos));
}
int VFS_RETURN(vfs_write)(struct pt_regs *ctx) { return vfs_exit(ctx, AETHER_OP_WRITE); }

/* int vfs_fsync_range(struct file *, loff_t start, loff_t end, int datasync) */
int VFS_ENTRY(vfs_fsync_range)(struct pt_regs *ctx, void *file, loff_t start, loff_t end, int datasync)
{
    return vfs_enter(datasync ? AETHER_OP_FDATASYNC : AETHER_OP_FSYNC, end - start, start);
}
int VFS_RETURN(vfs_fsync_range)(struct pt_regs *ctx)
{
    /* the op was decided at entry (fsync or fdatasync): accept either */
    u64 id = bpf_get_current_pid_tgid();
    struct vfs_start_t *sp = vfs_start.lookup(&id);
    return vfs_exit(ctx, sp ? sp->op : AETHER_OP_FSYNC);
}
