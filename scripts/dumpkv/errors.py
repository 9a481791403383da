"""User-facing errors of the dump script."""


class DumpError(Exception):
    """A problem with the inputs (file, flag, text) described in one line.

    The CLI prints ``dump_kv.py: error: <message>`` and exits with status 1 without writing output.
    """


class NotImplementedBackend(Exception):
    """A backend that is planned but not available yet (the CLI exits with status 2)."""
