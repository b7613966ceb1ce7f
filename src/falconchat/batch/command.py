"""`falconchat batch`, the command: read and check the input, size the concurrency, run the
items (runner.py) and write the summary; returns the exit code."""

from __future__ import annotations

from dataclasses import replace

from falconchat.backends.registry import BACKENDS
from falconchat.batch.input import Parsed, parse_lines
from falconchat.batch.openai_input import MAX_REQUESTS, detect, parse_openai
from falconchat.batch.output import OutputFile, StdoutOutput, write_stats
from falconchat.batch.progress import Notes, replica_lines, summary_line
from falconchat.batch.replicas import POLICIES, Pool, probe_replicas
from falconchat.batch.rows import OpenAIRows, OwnRows
from falconchat.batch.runner import BatchOptions, Runner
from falconchat.environment import Environment
from falconchat.errors import ExitCode, InputError, UsageError

DEFAULT_CONCURRENCY = 8  # for endpoints; a model decoded here runs as many as it decodes together
FORMATS = ("auto", "openai", "jsonl", "lines")
MAX_REPORTED = 20  # bad lines listed before "… and N more"


def run_batch(settings, options: BatchOptions, env: Environment) -> int:
    """Read, check, run and write; returns the exit code (0 all answered, 1 some failed, 130 Ctrl-C)."""

    check_options(options)
    notes = Notes(env, verbose=settings.verbose)
    fmt, parsed = read_items(settings, options, env, notes)
    pool = None
    if options.endpoints:  # several replicas: each probed once; the model is theirs
        pool = Pool(probe_replicas(settings.model, list(options.endpoints), notes), options.policy)
        settings = replace(settings, model=pool.replicas[0].spec)
    model = settings.model.remote_model or settings.model.name
    for name, number in parsed.models.items():  # the command's model answers every request
        if name != model:
            notes.write(f"ignoring model {name!r} (first on line {number}): every request goes to {model}")
    retry_failed = fmt == "openai"  # OpenAI's rows resume on custom_id: failed ones run again
    out = (
        OutputFile(options.output, resume=options.resume, cwd=env.cwd, retry_failed=retry_failed)
        if options.output
        else StdoutOutput(env.stdout)
    )
    errors_out: OutputFile | None = None
    try:
        if options.errors:
            errors_out = OutputFile(options.errors, resume=options.resume, cwd=env.cwd, retry_failed=retry_failed)
        if out.discarded_bytes:
            notes.write(f"discarded a partial last line ({out.discarded_bytes} bytes) of {options.output}")
        done = out.done_keys | (errors_out.done_keys if errors_out else set())
        todo = [item for item in parsed.items if item.key not in done]
        concurrency = concurrency_for(settings.model, options.concurrency, notes)
        if pool is not None and options.concurrency is None:
            concurrency = DEFAULT_CONCURRENCY * len(pool.replicas)  # -j: in all, over every replica
        rows = OpenAIRows(model) if fmt == "openai" else OwnRows()
        runner = Runner(settings.model, todo, concurrency, options, notes, rows, pool)
        runner.errors_out = errors_out
        stats = runner.run(out)
    finally:
        out.close()
        if errors_out is not None:
            errors_out.close()
    stats.update(bad=len(parsed.bad), skipped=len(parsed.items) - len(todo), output=options.output)
    if pool is not None:  # each replica's share, then the summary: still the last line
        stats["replicas"] = [replica.stats() for replica in pool.replicas]
        for line in replica_lines(stats["replicas"]):
            notes.write(line, prefix="falconchat batch: ")
    notes.write(summary_line(stats), prefix="falconchat batch: ")
    if options.stats:
        write_stats(env.cwd / options.stats, stats)
    if stats["interrupted"]:
        return ExitCode.INTERRUPTED
    return 0 if stats["failed"] == 0 and not parsed.bad else 1


def check_options(options: BatchOptions) -> None:
    if options.input_format not in FORMATS:
        raise UsageError(f"--input-format must be auto, openai, jsonl or lines, not {options.input_format!r}")
    if options.resume and not options.output:
        raise UsageError("--resume needs -o OUTPUT: the file it continues")
    if options.errors and options.errors == options.output:
        raise UsageError("--errors FILE must be another file than -o OUTPUT")
    if options.policy not in POLICIES:
        raise UsageError(f"--policy must be least-busy or round-robin, not {options.policy!r}")


def read_items(settings, options: BatchOptions, env: Environment, notes) -> tuple[str, Parsed]:
    """The input's format and items, its bad lines reported; --strict refuses any."""
    lines = read_input(options.input_path, env)
    fmt = detect(lines, options.input_format)
    if fmt == "openai":
        parsed = parse_openai(lines, settings.system, settings.sampling, settings.max_input_bytes)
    else:
        parsed = parse_lines(lines, fmt, settings.system, settings.sampling, settings.max_input_bytes)
    with_sources(parsed, settings, options, env, notes)
    report_input(parsed, notes)
    refused = [item for item in parsed.items if item.refused is not None]
    if options.strict and (parsed.bad or refused):
        raise InputError(f"{len(parsed.bad) + len(refused)} bad input line(s); nothing was run (--strict)")
    if fmt == "openai" and len(parsed.items) > MAX_REQUESTS:
        notes.write(f"{len(parsed.items)} requests: more than OpenAI's Batch API takes in one file ({MAX_REQUESTS})")
    return fmt, parsed


def with_sources(parsed: Parsed, settings, options: BatchOptions, env: Environment, notes) -> None:
    """The sources of -f/--sf/-a (every line) and of each line's `files`, read before anything
    runs and put before its message (or in its system message); a line whose sources cannot
    be read is a bad line, one that names it."""
    from falconchat.images import read_images  # noqa: PLC0415 (only with sources)
    from falconchat.sources import STDIN, read_sources, system_with_blocks, with_blocks  # noqa: PLC0415
    from falconchat.web_source import URL_TIMEOUT_S  # noqa: PLC0415 (only with sources)

    limit, timeout = settings.max_file_size, min(settings.model.timeout, URL_TIMEOUT_S)
    if STDIN in options.files + options.system_files:
        raise UsageError("batch: -f - is not a source here (standard input can be batch's INPUT)")
    given = options.files + options.system_files + options.images
    if not given and not any(item.files for item in parsed.items):
        return
    shared = read_sources(options.files, env, limit, timeout)
    shared.blocks.extend(read_images(options.images, env, limit))
    system = read_sources(options.system_files, env, limit, timeout)
    for note in (*shared.notes, *system.notes):
        notes.write(note)
    read: dict[str, list] = {}  # a source named by many lines is read once
    kept = []
    for item in parsed.items:
        blocks = list(shared.blocks)
        try:
            for spec in item.files:
                if spec not in read:
                    loaded = read_sources([spec], env, limit, timeout)
                    for note in loaded.notes:
                        notes.write(f"line {item.line}: {note}")
                    read[spec] = loaded.blocks
                blocks.extend(read[spec])
        except InputError as exc:
            parsed.bad.append((item.line, exc.message))
            continue
        kept.append(
            replace(
                item,
                message=with_blocks(item.message, blocks),
                system=system_with_blocks(item.system, system.blocks),
            )
        )
    parsed.items[:] = kept
    parsed.bad.sort()


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
