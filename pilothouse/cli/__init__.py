"""The `pilothouse` command: kubectl-like verbs over the control-plane API, and the processes.

`main.py` parses the command line and dispatches to one module per verb group; each verb module
exposes `add_parser(subparsers)` and `async run(args, context) -> int` and is listed by hand in
`main.py`. Verbs print human text on stdout and diagnostics on stderr, as kubectl does.
"""
