"""Node agent: state (see ARCHITECTURE.md)."""
