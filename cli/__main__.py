"""`python -m cli`: the same entry point as the `pgmove` script."""

from cli.main import app

app()
