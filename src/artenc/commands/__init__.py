"""Sub-commands of the `artenc` CLI.

Each module here defines `register(subparsers)`, which adds its parser and sets
`func=run`, where `run(args) -> int` does the work. Modules are discovered
automatically; heavy imports belong inside `run`, so `artenc --help` stays fast.
"""
