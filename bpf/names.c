// SPDX-License-Identifier: Apache-2.0
/* names.c: which file each fd is, told by the kernel when it happens.
 *
 * Reading /proc/PID/fd after the fact is wrong for every file opened and closed between
 * two reads (tar, cat loops, a database's short-lived files) and for a number reused by
 * the time we look. Instead the syscalls that make, copy and close fds, and those that
 * change the working directory, emit a struct aether_name record (bpf/aether_event.h)
 * into a second output, "names"; user space (aether_rec.recorder.fdtable) replays them to
 * know which path an fd had at the time of each I/O and resolves relative paths against
 * the working directory. Only tasks that pass the task filters are followed.
 * Included by tasks.c (which owns the fork and exit hooks) when AETHER_NAMES_ON is set.
 * Parameters: AETHER_NAMES_PAGES (ring buffer pages), SC_NAMES_MAP_SIZE (calls in flight),
 * AETHER_NM_<syscall> (hooks the running kernel has), and those of aether_common.h.
 */
#include "aether_common.h"

#ifndef AETHER_NAMES_PAGES
#define AETHER_NAMES_PAGES 256
#endif
#ifndef SC_NAMES_MAP_SIZE
#define SC_NAMES_MAP_SIZE 16384
#endif
#define AETHER_AT_FDCWD -100

#ifdef AETHER_RINGBUF
BPF_RINGBUF_OUTPUT(names, AETHER_NAMES_PAGES);
#else
BPF_PERF_OUTPUT(names);
#endif
BPF_PERCPU_ARRAY(name_scratch, struct aether_name, 1);

/* what an *_enter saw, for its exit: the user pointer (path or fd array) and arguments */
struct name_pending_t {
    u64 ptr;
    s32 arg;
    u32 flags;
    u8 kind;
};
BPF_HASH(name_pending, u64, struct name_pending_t, SC_NAMES_MAP_SIZE);

static __always_inline int nm_wanted(u64 id)
{
    u32 tgid = id >> 32;
    return tgid != SELF_TGID && aether_task_wanted(tgid);
}

static __always_inline int nm_pend(u8 kind, const void *ptr, s32 arg, u32 flags)
{
    u64 id = bpf_get_current_pid_tgid();
    if (!nm_wanted(id))
        return AETHER_PASS;
    struct name_pending_t p = {.ptr = (u64)ptr, .arg = arg, .flags = flags, .kind = kind};
    if (name_pending.update(&id, &p) != 0)
        aether_count(AETHER_C_NAME_FAILED);
    return AETHER_PASS;
}

/* emit a record; path read from user memory at upath when not NULL */
static __always_inline void nm_emit(void *ctx, u64 id, u8 kind, s32 fd, s32 arg, u32 flags,
                                    const char *upath)
{
    int zero = 0;
    struct aether_name *r = name_scratch.lookup(&zero);
    if (!r)
        return;
    r->ts = bpf_ktime_get_ns();
    r->pid = id >> 32;
    r->tid = (u32)id;
    r->fd = fd;
    r->arg = arg;
    r->flags = flags;
    r->kind = kind;
    r->path[0] = 0;
    if (upath)
        bpf_probe_read_user_str(r->path, sizeof(r->path), upath);
#ifdef AETHER_RINGBUF
    if (names.ringbuf_output(r, sizeof(*r), BPF_RB_NO_WAKEUP) != 0) /* read on the timer */
        aether_count(AETHER_C_NAME_FAILED);
#else
    if (names.perf_submit(ctx, r, sizeof(*r)) < 0)
        aether_count(AETHER_C_NAME_FAILED);
#endif
}

/* the exit of a call recorded by nm_pend: one record if it succeeded */
static __always_inline int nm_exit(void *ctx, long ret)
{
    u64 id = bpf_get_current_pid_tgid();
    struct name_pending_t *pp = name_pending.lookup(&id);
    if (!pp)
        return AETHER_PASS;
    struct name_pending_t p = *pp;
    name_pending.delete(&id);
    if (ret < 0)
        return AETHER_PASS;
    if (p.kind == AETHER_NAME_OPEN) {
        nm_emit(ctx, id, p.kind, (s32)ret, p.arg, p.flags, (const char *)p.ptr);
    } else if (p.kind == AETHER_NAME_CHDIR) {
        nm_emit(ctx, id, p.kind, -1, -1, 0, (const char *)p.ptr);
    } else if (p.kind == AETHER_NAME_PIPE || (p.kind == AETHER_NAME_SOCKET && p.ptr)) {
        int fds[2] = {-1, -1};
        bpf_probe_read_user(&fds, sizeof(fds), (const void *)p.ptr);
        nm_emit(ctx, id, p.kind, fds[0], fds[1], 0, 0);
    } else {
        nm_emit(ctx, id, p.kind, (s32)ret, p.arg, p.flags, 0);
    }
    return AETHER_PASS;
}

/* calls whose record needs only their arguments: emitted at exit when they succeed */
static __always_inline int nm_simple_exit(void *ctx, long ret, u8 kind, s32 fd, s32 arg)
{
    u64 id = bpf_get_current_pid_tgid();
    if (ret >= 0 && nm_wanted(id))
        nm_emit(ctx, id, kind, fd, arg, 0, 0);
    return AETHER_PASS;
}

/* Each call below is NM_ENTER(name, body) (+ NM_EXIT(name) when its record is made at
 * exit), its arguments written P(field, n): the sys_enter tracepoint's field, or the n-th
 * argument register. Classic tracepoints: a sys_enter_X (and sys_exit_X) program per call.
 * AETHER_NM_RAW (x86_64): the list becomes the cases of nm_raw's switch on the syscall
 * number (AETHER_NR_X), called by sys_raw.c's raw_syscalls programs. */
#ifdef AETHER_NM_RAW
#define P(field, n) SC_REG##n
#define NM_CTX ctx
#define NM_ENTER(name, body)                                                                  \
    case AETHER_NR_##name:                                                                    \
        if (is_exit)                                                                          \
            return nm_exit(ctx, (long)ctx->args[1]);                                          \
        if (sc_regs_read(&R, ctx->args[0]) != 0)                                              \
            return AETHER_PASS;                                                               \
        { body }
#define NM_ENTER_ONLY(name, body)                                                             \
    case AETHER_NR_##name:                                                                    \
        if (is_exit || sc_regs_read(&R, ctx->args[0]) != 0)                                   \
            return AETHER_PASS;                                                               \
        { body }
#define NM_EXIT(name)

/* the fd-naming call nr's entry (is_exit 0: arguments read only for these calls) or exit */
static __always_inline int nm_raw(struct bpf_raw_tracepoint_args *ctx, int is_exit, long nr)
{
    struct sc_regs R = {};
    switch (nr) {
#else
#define P(field, n) args->field
#define NM_CTX args
#define NM_ENTER(name, body) TRACEPOINT_PROBE(syscalls, sys_enter_##name) { body }
#define NM_ENTER_ONLY(name, body) NM_ENTER(name, body)
#define NM_EXIT(name) \
    TRACEPOINT_PROBE(syscalls, sys_exit_##name) { return nm_exit(args, args->ret); }
#endif

#ifdef AETHER_NM_openat
NM_ENTER(openat, return nm_pend(AETHER_NAME_OPEN, (const void *)P(filename, 1), (s32)P(dfd, 0),
                                (u32)P(flags, 2));)
NM_EXIT(openat)
#endif
#ifdef AETHER_NM_openat2
NM_ENTER(openat2, u64 flags = 0;
         /* struct open_how starts with flags */
         bpf_probe_read_user(&flags, sizeof(flags), (const void *)P(how, 2));
         return nm_pend(AETHER_NAME_OPEN, (const void *)P(filename, 1), (s32)P(dfd, 0), (u32)flags);)
NM_EXIT(openat2)
#endif
#ifdef AETHER_NM_open
NM_ENTER(open, return nm_pend(AETHER_NAME_OPEN, (const void *)P(filename, 0), AETHER_AT_FDCWD,
                              (u32)P(flags, 1));)
NM_EXIT(open)
#endif
#ifdef AETHER_NM_creat
NM_ENTER(creat, return nm_pend(AETHER_NAME_OPEN, (const void *)P(pathname, 0), AETHER_AT_FDCWD,
                               01 | 0100 | 01000);)
NM_EXIT(creat)
#endif
#ifdef AETHER_NM_chdir
NM_ENTER(chdir, return nm_pend(AETHER_NAME_CHDIR, (const void *)P(filename, 0), -1, 0);)
NM_EXIT(chdir)
#endif
#ifdef AETHER_NM_pipe
NM_ENTER(pipe, return nm_pend(AETHER_NAME_PIPE, (const void *)P(fildes, 0), -1, 0);)
NM_EXIT(pipe)
#endif
#ifdef AETHER_NM_pipe2
NM_ENTER(pipe2, return nm_pend(AETHER_NAME_PIPE, (const void *)P(fildes, 0), -1, 0);)
NM_EXIT(pipe2)
#endif
#ifdef AETHER_NM_socketpair
NM_ENTER(socketpair, return nm_pend(AETHER_NAME_SOCKET, (const void *)P(usockvec, 3), -1, 0);)
NM_EXIT(socketpair)
#endif
/* the fd arguments of these are read at entry, and the record emitted at exit */
#ifdef AETHER_NM_dup
NM_ENTER(dup, return nm_pend(AETHER_NAME_DUP, 0, (s32)P(fildes, 0), 0);)
NM_EXIT(dup)
#endif
#ifdef AETHER_NM_dup2
NM_ENTER(dup2, return nm_pend(AETHER_NAME_DUP, 0, (s32)P(oldfd, 0), 0);)
NM_EXIT(dup2)
#endif
#ifdef AETHER_NM_dup3
NM_ENTER(dup3, return nm_pend(AETHER_NAME_DUP, 0, (s32)P(oldfd, 0), 0);)
NM_EXIT(dup3)
#endif
#ifdef AETHER_NM_fcntl
/* F_DUPFD (0) and F_DUPFD_CLOEXEC (1030) make a copy; other commands are not followed */
NM_ENTER(fcntl, if ((u32)P(cmd, 1) == 0 || (u32)P(cmd, 1) == 1030)
                    return nm_pend(AETHER_NAME_DUP, 0, (s32)P(fd, 0), 0);
                return AETHER_PASS;)
NM_EXIT(fcntl)
#endif
#ifdef AETHER_NM_fchdir
NM_ENTER(fchdir, return nm_pend(AETHER_NAME_FCHDIR, 0, (s32)P(fd, 0), 0);)
NM_EXIT(fchdir)
#endif
#ifdef AETHER_NM_socket
NM_ENTER(socket, return nm_pend(AETHER_NAME_SOCKET, 0, -1, 0);)
NM_EXIT(socket)
#endif
#ifdef AETHER_NM_accept
NM_ENTER(accept, return nm_pend(AETHER_NAME_SOCKET, 0, -1, 0);)
NM_EXIT(accept)
#endif
#ifdef AETHER_NM_accept4
NM_ENTER(accept4, return nm_pend(AETHER_NAME_SOCKET, 0, -1, 0);)
NM_EXIT(accept4)
#endif
/* close: the fd is gone whatever the result (even EINTR closes it on Linux) */
#ifdef AETHER_NM_close
NM_ENTER_ONLY(close, u64 id = bpf_get_current_pid_tgid();
              if (nm_wanted(id))
                  nm_emit(NM_CTX, id, AETHER_NAME_CLOSE, (s32)P(fd, 0), -1, 0, 0);
              return AETHER_PASS;)
#endif
#ifdef AETHER_NM_close_range
/* CLOSE_RANGE_UNSHARE / CLOEXEC (flags != 0) do not close in this table */
NM_ENTER_ONLY(close_range, u64 id = bpf_get_current_pid_tgid();
              if ((u32)P(flags, 2) == 0 && nm_wanted(id))
                  nm_emit(NM_CTX, id, AETHER_NAME_CLOSE_RANGE, (s32)P(fd, 0), (s32)P(max_fd, 1), 0, 0);
              return AETHER_PASS;)
#endif

#ifdef AETHER_NM_RAW
    } /* switch (nr) */
    return AETHER_PASS;
}
#endif
#undef P

/* A new process starts with a copy of its parent's fds and working directory
 * (called by tasks.c's sched_process_fork hook). */
static __always_inline void nm_fork(void *ctx, u64 id, u32 child)
{
    if (nm_wanted(id))
        nm_emit(ctx, id, AETHER_NAME_FORK, -1, (s32)child, 0, 0);
}
