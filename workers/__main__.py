"""`python -m workers [--burst]`: the same as `graphql-chat worker`."""

import sys

from graphql_chat.cli import cli

cli(["worker", *sys.argv[1:]])
