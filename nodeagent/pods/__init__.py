"""Node agent: pods (see ARCHITECTURE.md)."""
