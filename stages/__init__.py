"""hist's stage processes (extract, transform, load), the orchestrator that chains them and its watch
mode, the inspection services (`inspection/`) and the command line (`cli/`)."""
