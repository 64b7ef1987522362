"""Worker process entry points (distributed mode): `python -m workers` is `graphql-chat worker`.

Workers consume the write queue and hand each batch to `graphql_chat.writer.Writer`, the same
code the embedded pipeline runs in process.
"""
