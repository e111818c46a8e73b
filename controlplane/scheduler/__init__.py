"""Control plane: scheduler (see ARCHITECTURE.md)."""
