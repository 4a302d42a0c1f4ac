"""``python -m cityos.ingest …``: the ingest and dead-letter commands on their own (the same
commands as ``cityos ingest`` / ``cityos deadletters``), e.g. for a worker process."""

import typer

from cityos.ingest.cli import register

app = typer.Typer(no_args_is_help=True)
register(app)

if __name__ == "__main__":
    app()
