"""`falconchat batch`, the command: read and check the input, size the concurrency, run the
items (runner.py) and write the summary; returns the exit code."""

from __future__ import annotations

from falconchat.backends.registry import BACKENDS
from falconchat.batch.input import Parsed, detect_format, parse_lines
from falconchat.batch.output import OutputFile, StdoutOutput
from falconchat.batch.progress import Notes, summary_line
from falconchat.batch.runner import BatchOptions, Runner
from falconchat.environment import Environment
from falconchat.errors import ExitCode, InputError, UsageError

DEFAULT_CONCURRENCY = 8  # for endpoints; a model decoded here runs as many as it decodes together
MAX_REPORTED = 20  # bad lines listed before "… and N more"


def run_batch(settings, options: BatchOptions, env: Environment) -> int:
    """Read, check, run and write; returns the exit code (0 all answered, 1 some failed, 130 Ctrl-C)."""

    if options.input_format not in ("auto", "jsonl", "lines"):
        raise UsageError(f"--input-format must be auto, jsonl or lines, not {options.input_format!r}")
    if options.resume and not options.output:
        raise UsageError("--resume needs -o OUTPUT: the file it continues")
    notes = Notes(env, verbose=settings.verbose)
    lines = read_input(options.input_path, env)
    parsed = parse_lines(
        lines, detect_format(lines, options.input_format), settings.system, settings.sampling, settings.max_input_bytes
    )
    report_input(parsed, notes)
    if options.strict and parsed.bad:
        raise InputError(f"{len(parsed.bad)} bad input line(s); nothing was run (--strict)")
    out = OutputFile(options.output, resume=options.resume, cwd=env.cwd) if options.output else StdoutOutput(env.stdout)
    try:
        if out.discarded_bytes:
            notes.write(f"discarded a partial last line ({out.discarded_bytes} bytes) of {options.output}")
        todo = [item for item in parsed.items if item.key not in out.done_keys]
        runner = Runner(
            settings.model, todo, concurrency_for(settings.model, options.concurrency, notes), options, notes
        )
        stats = runner.run(out)
    finally:
        out.close()
    stats.update(bad=len(parsed.bad), skipped=len(parsed.items) - len(todo), output=options.output)
    notes.write(summary_line(stats), prefix="falconchat batch: ")
    if stats["interrupted"]:
        return ExitCode.INTERRUPTED
    return 0 if stats["failed"] == 0 and not parsed.bad else 1


def read_input(path: str | None, env: Environment) -> list[str]:
    """The input's lines (split on \\n only: JSON strings may hold other line breaks); a relative
    path is from the command's directory."""
    stdin = env.stdin
    if path in (None, "-"):
        if stdin is None or (path is None and stdin.isatty()):
            raise UsageError("nothing to do: give an INPUT file, or pipe prompts into falconchat batch")
        data = stdin.buffer.read()
    else:
        try:
            with open(env.cwd / str(path), "rb") as fh:
                data = fh.read()
        except OSError as exc:
            raise InputError(f"cannot read {path}: {exc.strerror}") from None
    return [line.removesuffix("\r") for line in data.decode("utf-8", errors="replace").split("\n")]


def report_input(parsed: Parsed, notes) -> None:
    for number, why in parsed.bad[:MAX_REPORTED]:
        notes.write(f"line {number}: {why}")
    if len(parsed.bad) > MAX_REPORTED:
        notes.write(f"… and {len(parsed.bad) - MAX_REPORTED} more bad lines")
    for name, number in list(parsed.ignored_fields.items())[:5]:
        notes.write(f"ignoring the field {name!r} (first on line {number})")


def concurrency_for(spec, asked: int | None, notes) -> int:
    """How many prompts run at once: an endpoint's -j (8 by default); a model decoded here
    runs at most as many as its backend decodes together (registry.py)."""

    most = BACKENDS[spec.backend].sequences
    if most is None:  # an endpoint: one client per worker
        return asked or DEFAULT_CONCURRENCY
    if asked and asked > most:  # each costs its own KV cache, and more are no faster
        if most == 1:
            notes.write(f"the {spec.backend} backend answers one prompt at a time: -j {asked} runs as -j 1")
        else:
            notes.write(
                f"the {spec.backend} backend decodes at most {most} prompts together: -j {asked} runs as -j {most}"
            )
        return most
    return asked or BACKENDS[spec.backend].default_sequences()
