"""The command line: the Typer app, its commands, reading stdin, listing models."""
