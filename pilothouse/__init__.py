"""Pilothouse: the package shared by the control plane, the node agent and the CLI.

Outside `cli/`, it holds only what they share: the generated schema (`v1`), kinds, manifests
and their validation, quantities and selectors, conditions, the client, configuration and
credentials, the PKI, OCI images and registries, logging, libc calls, and the plumbing of a
long-lived process (`process`: runnables, signals, address files, gRPC servers).

`cli/` is the `pilothouse` command: its verbs, tables and views, and the local cluster of
`up`/`down` (`cli.cluster`). Nothing else here imports it.

It never imports `controlplane` or `nodeagent`, and no module in it imports one that imports it
back (both checked by import-linter).
"""

__version__ = "0.1.0"
