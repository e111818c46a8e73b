"""Node agent: api (see ARCHITECTURE.md)."""
