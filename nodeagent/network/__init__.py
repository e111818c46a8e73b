"""Node agent: network (see ARCHITECTURE.md)."""
