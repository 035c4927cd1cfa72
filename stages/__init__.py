"""hist's stage processes (extract, transform, load), the orchestrator that chains them, and the CLI."""
