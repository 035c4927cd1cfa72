"""One error hierarchy for the whole pipeline, classified once: transient errors are retried, terminal
ones fail the chunk (or the run) with a message that names what was wrong."""


class HistError(Exception):
    """Root of every error hist raises on purpose; the CLI prints its message as one line."""


class TransientError(HistError):
    """Worth retrying: rate limits, 5xx, broken connections, an unreachable database."""


class TerminalError(HistError):
    """Retrying cannot help: bad input, a rejected request, a corrupt file."""


class ConfigError(TerminalError):
    """The configuration or the command line asks for something invalid."""


class ChunkFailed(TerminalError):
    """A stage could not produce its output for one chunk; other chunks are unaffected."""

    def __init__(self, chunk_id: str, stage: str, reason: str) -> None:
        super().__init__(f"{stage} failed for chunk {chunk_id}: {reason}")
        self.chunk_id = chunk_id
        self.stage = stage
        self.reason = reason
