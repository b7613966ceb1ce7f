"""`falconchat models`: the configured models or a server's (models.py), and the models pulled
from the Hugging Face Hub: `pull` (pull.py), `rm` and `info` (hub_models.py). Each command's
module is imported when it runs, so `falconchat --help` stays instant."""

from __future__ import annotations

import typer

from falconchat.cli.options import invocation, load

models_app = typer.Typer(
    name="models",
    help="List the configured models: backend, where they point, and whether they answer; or a server's models.",
    invoke_without_command=True,
    no_args_is_help=False,
    rich_markup_mode=None,
)


@models_app.callback()
def models(
    ctx: typer.Context,
    endpoint: str | None = typer.Option(
        None, "--endpoint", metavar="URL", help="List the models this server serves (TGI or OpenAI-compatible)."
    ),
    timeout: str | None = typer.Option(None, "--timeout", metavar="SECONDS", help="Endpoint timeout."),
    env_file: str | None = typer.Option(None, "--env-file", metavar="PATH", help="Read this .env file."),
    config: str | None = typer.Option(None, "--config", metavar="PATH", help="Config TOML file."),
) -> int:
    """List the configured models: backend, where they point, and whether they answer; or a server's models."""
    from falconchat.cli.models import print_models, print_served  # noqa: PLC0415 (per-command dispatch)

    if ctx.invoked_subcommand is not None:  # `models pull …`: the subcommand does the work
        return 0
    run = invocation(ctx)
    own = {"env_file": env_file, "config": config, "endpoint": endpoint, "timeout": timeout}
    flags = {name: value or run.shared.get(name) for name, value in own.items()}  # also given before `models`
    settings = load(flags, run.env)
    env = run.env
    if flags["endpoint"]:
        print_served(settings.model, env)
    else:
        print_models(settings, env)
    ctx.exit(0)
    return 0


@models_app.command("pull")
def models_pull(
    ctx: typer.Context,
    name: str = typer.Argument(
        ...,
        metavar="NAME",
        help="hf:OWNER/REPO, hf:OWNER/REPO:QUANT or hf:OWNER/REPO/FILE.gguf, each with an optional @REVISION.",
    ),
) -> int:
    """Download a GGUF model from the Hugging Face Hub into the Hub's cache (resumable, checked against the Hub's sha256)."""
    from falconchat.cli.pull import pull_command  # noqa: PLC0415 (per-command dispatch)

    return pull_command(invocation(ctx).env, name)


@models_app.command("rm")
def models_rm(
    ctx: typer.Context,
    name: str = typer.Argument(
        ..., metavar="NAME", help="A pulled model: hf:OWNER/REPO[:QUANT] or hf:OWNER/REPO/FILE.gguf."
    ),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask (needed when not on a terminal)."),
) -> int:
    """Delete a pulled model from the Hugging Face cache, and say how much it freed."""
    from falconchat.cli.hub_models import rm_command  # noqa: PLC0415 (per-command dispatch)

    return rm_command(invocation(ctx).env, name, yes)


@models_app.command("info")
def models_info(
    ctx: typer.Context,
    name: str = typer.Argument(..., metavar="NAME", help="A pulled hf: model, a GGUF file, or smollm2."),
) -> int:
    """What a GGUF says about itself: architecture, parameters, context, its chat template's first lines."""
    from falconchat.cli.hub_models import info_command  # noqa: PLC0415 (per-command dispatch)

    return info_command(invocation(ctx).env, name)
