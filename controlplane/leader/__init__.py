"""Control plane: leader (see ARCHITECTURE.md)."""
