"""Control plane: controllers (see ARCHITECTURE.md)."""
