"""The read-only web dashboard and the flags for operating a cluster (issue 16)."""
