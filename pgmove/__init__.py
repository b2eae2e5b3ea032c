"""pgmove: move a PostgreSQL server, two people, one runbook.

The packages live at the top of the repository (state/, handlers/, steps/, worker/, bot/, cli/,
sandbox/); the entries of this folder are links to them, so a checkout, mypy and an installed wheel
all know them by one name, pgmove.<package>, and nothing generic like `state` lands in site-packages.
"""
