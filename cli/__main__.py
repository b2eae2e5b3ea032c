"""`python -m cli`: the same entry point as the `pgmove` script."""

from pgmove.cli.main import run

run()
