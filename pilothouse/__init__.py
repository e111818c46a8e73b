"""Pilothouse: the package shared by the control plane, the node agent and the CLI.

Holds what both processes agree on: the generated schema (`pilothouse.v1`), manifests and their
validation, quantities, the client, the CLI, configuration, TLS and logging setup. It never
imports `controlplane` or `nodeagent` (checked by import-linter).
"""

__version__ = "0.1.0"
