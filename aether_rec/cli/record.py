"""Commands that talk to the kernel: record and doctor."""

from __future__ import annotations

import sys

import click

from aether_rec.cli.common import echo_json, note
from aether_rec.ops.units import parse_duration, parse_size
from aether_rec.recorder.probes import ALL_LAYERS, DEFAULT_LAYERS
from aether_rec.recorder.syscalls import INFLIGHT_KINDS, SYSCALL_HOOK_KINDS


def _seconds(value: str | None) -> int | None:
    """--duration/--rotate-time: a duration, a bare number meaning seconds."""
    return parse_duration(value, default_unit="s") if value is not None else None


def _size(value: str | None) -> int | None:
    return parse_size(value) if value else None


@click.command(context_settings={"ignore_unknown_options": False})
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(allow_dash=True),
    help="Capture file to write ('-': stream to stdout). Created with mode 0600, exclusively, "
    "never through a symbolic link.",
)
@click.option(
    "--force",
    is_flag=True,
    help="Replace OUTPUT (and rotated names) if it exists: the old name is removed and a new "
    "0600 file made. A symbolic link is refused even so.",
)
@click.option(
    "--layers",
    metavar="LIST",
    help=f"I/O layers: {', '.join(ALL_LAYERS)}, or all [default: {','.join(DEFAULT_LAYERS)}]. "
    "A layer the kernel cannot offer is an error when named here.",
)
@click.option(
    "--ops",
    metavar="LIST",
    help="Only these ops, e.g. pread,pwrite,fsync (syscall hooks not "
    "attached, block ops filtered in the kernel).",
)
@click.option(
    "-p",
    "--pid",
    "pids",
    multiple=True,
    type=int,
    metavar="PID",
    help="Only this process and its children (repeatable), filtered in the kernel.",
)
@click.option(
    "--comm", metavar="NAME", help="Only tasks with this name (first 15 bytes, as the kernel keeps)."
)
@click.option(
    "--cgroup",
    metavar="PATH",
    help="Only tasks in this cgroup v2 (or below), e.g. system.slice/postgresql.service.",
)
@click.option(
    "--min-latency", metavar="DURATION", help="Only I/Os slower than this (e.g. 2ms), in the kernel."
)
@click.option(
    "-d",
    "--duration",
    metavar="DURATION",
    help="Stop after this long (e.g. 30s, 5m, 1h), counted from the first probe attached; "
    "I/Os begun after that are not recorded.",
)
@click.option("--max-events", type=int, help="Stop after this many events.")
@click.option("--max-size", metavar="SIZE", help="Stop once the output reaches this size (e.g. 1G).")
@click.option(
    "--rotate-size", metavar="SIZE", help="Start a new numbered file (run.0001.aio, ...) at this size."
)
@click.option("--rotate-time", metavar="DURATION", help="Start a new numbered file this often (e.g. 1h).")
@click.option(
    "--syscall-hooks",
    type=click.Choice(SYSCALL_HOOK_KINDS),
    default="auto",
    show_default=True,
    help="How the syscall layer hooks syscalls: raw (the raw_syscalls raw tracepoints, one "
    "program for every syscall; x86_64), tracepoint (a classic syscalls:sys_enter_X/sys_exit_X "
    "pair per syscall, several times the cost per call), or auto: raw on kernels up to 6.18 (newer "
    "ones may preempt raw syscall programs, which then skip calls), classic after.",
)
@click.option(
    "--inflight",
    type=click.Choice(INFLIGHT_KINDS),
    default="auto",
    show_default=True,
    help="Where the kernel keeps each thread's syscall between its entry and exit: "
    "task-storage (the thread's own BPF task storage, Linux 5.12+; about half the in-kernel "
    "cost per syscall), hash (a map of at most 16,384 threads in syscalls at once), or auto: "
    "task storage where the kernel has it.",
)
@click.option(
    "--transport",
    type=click.Choice(["auto", "perf", "ringbuf"]),
    default="auto",
    show_default=True,
    help="How events leave the kernel: perf buffers (one per CPU, every kernel), a BPF ring "
    "buffer (shared, 5.8+), or auto: the ring buffer where the kernel has it. Both are read "
    "in bulk.",
)
@click.option(
    "--buffer-pages",
    type=int,
    help="Buffer size in pages, a power of two: per CPU for perf [32 MiB shared out over the "
    "CPUs], in all for ringbuf [8192 = 32 MiB]. More pages, fewer losses at high rates.",
)
@click.option(
    "--wakeup-events",
    type=int,
    default=None,
    help="Samples per perf buffer wakeup [an eighth of a CPU's buffer]; fewer are read by a "
    "100 ms timer.",
)
@click.option(
    "--status/--no-status",
    default=None,
    help="Live status line on stderr [default: when stderr is a terminal].",
)
@click.option(
    "-u",
    "--user",
    metavar="NAME",
    help="Once the probes are attached and OUTPUT is open, drop root for good and go on as "
    "NAME (its groups, no capabilities), like tcpdump -Z. OUTPUT is handed to NAME; a traced "
    "CMD runs as NAME too. With --rotate-*, NAME must be able to create files in OUTPUT's "
    "directory.",
)
@click.option(
    "--redact",
    is_flag=True,
    help="Write names, paths, the hostname and command lines as keyed hashes, as "
    "'aether-rec redact' does (random key unless --redact-key-file).",
)
@click.option(
    "--redact-key-file",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="HMAC key for --redact (at least 16 bytes; implies --redact): the same key hashes "
    "names the same way as 'aether-rec redact --key-file'.",
)
@click.option("--ebpf", is_flag=True, help="Print the BPF program that would be loaded, and exit.")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def record(
    output: str,
    force: bool,
    layers: str | None,
    ops: str | None,
    pids: tuple[int, ...],
    comm: str | None,
    cgroup: str | None,
    min_latency: str | None,
    duration: str | None,
    max_events: int | None,
    max_size: str | None,
    rotate_size: str | None,
    rotate_time: str | None,
    syscall_hooks: str,
    inflight: str,
    transport: str,
    buffer_pages: int | None,
    wakeup_events: int | None,
    status: bool | None,
    user: str | None,
    redact: bool,
    redact_key_file: str | None,
    ebpf: bool,
    command: tuple[str, ...],
) -> None:
    """Record the latency of every I/O into a capture (root, Linux).

    Records until Ctrl-C/SIGTERM, a stop option, or, with `-- CMD ARGS`, until CMD
    exits; CMD and its children are traced and its exit status is returned. On stop
    the buffers are drained, the index written and a summary printed on stderr.
    Losses (full buffers, full maps) are stored in the capture as loss blocks.

    \b
    Signals and failures:
      SIGINT, SIGTERM  drain, write the index, print the summary; exit 0. With CMD the
                       signal is passed on (Ctrl-C reaches it from the terminal) and the
                       recording ends when CMD does: exit = CMD's status; a second
                       signal stops at once and leaves CMD running.
      SIGHUP           start the next numbered file now (run.aio, run.0002.aio, ...);
                       each file is complete. Ignored with -o -. If the next file
                       cannot be made, one warning and recording goes on.
      CMD dies         by a signal N: recording stops, exit 128+N (like a shell).
      kill -9, crash   the file reads up to its last chunk (one is written at least
                       every second: about 1 s of events is lost); 'aether-rec
                       recover' indexes it.
      disk full, any   one line on stderr, exit 1; the file keeps every complete
      write error      chunk; probes are detached; a running CMD goes on untraced
                       and is waited for.
      -o - slow reader writes block; meanwhile the kernel buffer fills and what does
                       not fit is counted as lost (loss blocks, summary, 'info'). A
                       stop signal waits for the reader; a second one gives up
                       (one line, exit 1, the stream ends without an index).
      -o - reader gone one line ("broken pipe"), exit 1.

    \b
    Examples:
      sudo aether-rec record -o run.aio                         # until Ctrl-C
      sudo aether-rec record -o run.aio --duration 30s --min-latency 1ms
      sudo aether-rec record -o run.aio --pid 1234 --ops pread,pwrite,fsync
      sudo aether-rec record -o run.aio -- pg_dump mydb > dump.sql
      sudo aether-rec record -o day.aio --rotate-time 1h --duration 24h
      sudo aether-rec record -o - --duration 10s | aether-rec stats -
      sudo aether-rec record -o x.aio --ebpf                    # show the BPF program
    """
    from aether_rec.ops.redact import load_key
    from aether_rec.recorder import RecordOptions, prepare
    from aether_rec.recorder import record as do_record

    opts = RecordOptions(
        output=output,
        force=force,
        layers=layers,
        ops=ops,
        pids=pids,
        comm=comm,
        cgroup=cgroup,
        min_latency_ns=parse_duration(min_latency) if min_latency else 0,
        duration_ns=_seconds(duration),
        max_events=max_events,
        max_size=_size(max_size),
        rotate_size=_size(rotate_size),
        rotate_time_ns=_seconds(rotate_time),
        command=command,
        syscall_hooks=syscall_hooks,
        inflight=inflight,
        transport=transport,
        buffer_pages=buffer_pages,
        wakeup_events=wakeup_events,
        status=status,
        argv=tuple(["aether-rec", *sys.argv[1:]]),
        user=user,
        redact=redact or redact_key_file is not None,
        redact_key=load_key(redact_key_file) if redact_key_file else None,
    )
    prep = prepare(opts, log=note)
    if ebpf:
        click.echo(prep.program.render(), nl=False)
        return
    result = do_record(opts, log=note, prepared=prep)
    if result.exit_code:
        sys.exit(result.exit_code)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--no-mount", is_flag=True, help="Do not mount tracefs if it is missing; report it.")
def doctor(as_json: bool, no_mount: bool) -> None:
    """Check whether this machine can record, and what recording would use.

    Reports privileges, bcc (version and where it was found), the kernel headers bcc
    will use, tracefs, for each layer the hooks that would be used or why none can be,
    and the transports. Exit status 1 when recording cannot run.

    \b
    Examples:
      sudo aether-rec doctor
      sudo aether-rec doctor --json | jq .layers
    """
    from aether_rec.recorder.doctor import doctor as run_doctor
    from aether_rec.recorder.doctor import render

    rep = run_doctor(mount=not no_mount)
    if as_json:
        echo_json(rep)
    else:
        for line in render(rep):
            click.echo(line)
    if not rep["ok"]:
        sys.exit(1)
