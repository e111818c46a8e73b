"""Control plane: cache (see ARCHITECTURE.md)."""
