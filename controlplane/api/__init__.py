"""Control plane: api (see ARCHITECTURE.md)."""
