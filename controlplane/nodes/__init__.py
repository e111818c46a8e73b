"""Control plane: nodes (see ARCHITECTURE.md)."""
