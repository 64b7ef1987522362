"""`python -m workers [--burst]`: the same as `graphql-chat worker`."""

import typer

from workers import main

typer.run(main)
