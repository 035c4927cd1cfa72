"""The `hist` command line: a thin Typer front end over PipelineOrchestrator and the inspection
services. `app` is the entry point."""

from stages.cli.app import app

__all__ = ["app"]
