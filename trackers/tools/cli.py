"""The ``looptrack`` command: the demo, and tools that read runs back with TensorBoard's reader.

looptrack demo [--epochs 2 ...]          train the tutorial CNN and log it
looptrack inspect runs                    runs, tags, kinds, counts, steps, last values
looptrack export runs --format csv -o scalars.csv
looptrack doctor runs [--salvage DIR]     check every record's CRC, salvage a damaged run
looptrack names                           the registered callbacks, sinks and loop adapters (config names)

inspect, export and doctor read a run directory, a directory of runs or one
event file. Exit status: 0 done; 1 doctor found damaged records, or the
reader of the output closed it early (``looptrack inspect runs | head -1``:
no traceback, Python's own status for EPIPE, as its documentation's note on
SIGPIPE recommends); 2 a usage error or a path that does not exist or cannot
be read, said on stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

LOG_PATH_HELP = "a run directory, a directory of runs (e.g. runs) or one event file"
EXIT_OUTPUT_CLOSED = 1  # what Python itself exits with on EPIPE (docs.python.org/3/library/signal.html)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="looptrack",
        description="Watch a PyTorch model train: TensorBoard logging through trainer-agnostic callbacks.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser(
        "demo", add_help=False, help="train the tutorial's FashionMNIST CNN through looptrack (looptrack demo --help)"
    )
    inspect = commands.add_parser(
        "inspect",
        help="a table of the runs, tags and steps under a log dir",
        description="Read every run under LOGDIR (or the event file LOGDIR) with TensorBoard's reader and "
        "print one row per tag: kind, count, first/last step, last value.",
    )
    inspect.add_argument("logdir", help=LOG_PATH_HELP)
    export = commands.add_parser(
        "export",
        help="all scalars of every run as CSV or JSON",
        description="Write every scalar of every run under LOGDIR (or of the event file LOGDIR), read with "
        "TensorBoard's reader, as CSV (run,tag,step,wall_time,value) or JSON "
        "({run: {tag: [[wall_time, step, value], ...]}}). The JSON is strict (json.loads, JavaScript's "
        'JSON.parse): a NaN or infinite value is written as the string "NaN", "Infinity" or "-Infinity", '
        "which float(v) in Python and Number(v) in JavaScript turn back into the number; CSV has nan, inf, -inf.",
    )
    export.add_argument("logdir", help=LOG_PATH_HELP)
    export.add_argument(
        "--format",
        choices=("csv", "json"),
        default="csv",
        help='output format (default csv); JSON writes NaN/infinite values as "NaN", "Infinity", "-Infinity"',
    )
    export.add_argument("-o", "--output", help="file to write (default: standard output)")
    doctor = commands.add_parser(
        "doctor",
        help="check every record of a run's event files; salvage damage",
        description="Verify the CRC of every record in every event file under LOGDIR (or of the event file LOGDIR) "
        "and report corrupt or truncated records with file and offset. "
        "TensorBoard stops reading a file at its first bad record; "
        "--salvage writes a copy that keeps every good record.",
    )
    doctor.add_argument("logdir", help=LOG_PATH_HELP)
    doctor.add_argument("--salvage", metavar="OUTDIR", help="write a repaired copy of the run(s) here")
    commands.add_parser(
        "names",
        help="the names config files and writer= accept",
        description="Every registered callback, sink and loop adapter: built-ins, entry points and run-time "
        "registrations, as config files, Tracker(writer=...) and Tracker.attach look them up.",
    )
    return parser


def registered_names() -> str:
    """One line per registry group: ``callbacks: embedding, graph, ...``."""
    from trackers import registry

    return "\n".join(f"{kind}s: {', '.join(registry.known_names(group))}" for group, kind in registry.KINDS.items())


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``looptrack`` console script and ``python -m trackers``; returns the exit status."""
    try:
        status = _run(list(sys.argv[1:] if argv is None else argv))
        sys.stdout.flush()  # a reader that closed the pipe early is found here, not at interpreter exit
    except BrokenPipeError:
        # the reader (head, less) has what it wanted; Python flushes stdout again at exit, so point it at
        # devnull first (docs.python.org/3/library/signal.html#note-on-sigpipe)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OUTPUT_CLOSED
    return status


def _run(argv: list[str]) -> int:
    if argv and argv[0] == "demo":
        from trackers.tools.demo import main as demo_main

        return demo_main(argv[1:])
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        if args.command == "inspect":
            from trackers.tools.inspect_runs import format_table, summarize

            print(format_table(summarize(args.logdir)))
        elif args.command == "export":
            from trackers.tools.inspect_runs import export

            text = export(args.logdir, args.format)
            if args.output:
                try:
                    with open(args.output, "w", encoding="utf-8") as file:
                        file.write(text)
                except OSError as error:
                    raise OSError(
                        f"cannot write -o {args.output!r}: {error.strerror or error}; "
                        "pass a file in a directory that exists and that you can write to"
                    ) from error
                print(f"wrote {args.output}")
            else:  # line by line: a reader that stops early is noticed (one big write can lose it silently)
                sys.stdout.writelines(text.splitlines(keepends=True))
        elif args.command == "names":
            print(registered_names())
        elif args.command == "doctor":
            from trackers.tools.doctor import check, format_reports, salvage

            reports = salvage(args.logdir, args.salvage) if args.salvage else check(args.logdir)
            print(format_reports(reports, args.logdir))
            if args.salvage:
                print(f"salvaged copy written to {args.salvage}")
            return 0 if all(r.ok for r in reports) else 1
    except BrokenPipeError:
        raise
    except (OSError, ValueError) as error:  # a missing or unreadable path, an -o that can't be written
        print(f"looptrack {args.command}: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
