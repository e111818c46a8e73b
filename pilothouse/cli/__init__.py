"""The `pilothouse` command: kubectl-like verbs over the control-plane API, and the processes.

`main.py` parses the command line and dispatches to one module per verb group; each verb module
exposes `add_parser(subparsers)` and `async run(args, context) -> int` and is listed by hand in
`main.py`. Verbs print human text on stdout and diagnostics on stderr, as kubectl does.

A verb group with machinery of its own is a package whose `verbs` module is the command line:
`rollout/` (client-side rollout logic), `describe/` (a page per kind) and `cluster/` (the local
cluster of `up`/`down`, also `python3 -m pilothouse.cli.cluster`). `tables`, `sheet` and `shape`
are the views (kubectl's tables, describe pages, the Kubernetes JSON shape); `errors` says what
a person reads about a failure. Only the CLI imports anything here.
"""
