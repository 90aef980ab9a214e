"""Subcommands of ``python -m Training`` (each registered in ``Training.cli.COMMANDS``)."""
