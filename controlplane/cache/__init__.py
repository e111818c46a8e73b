"""Caches of stored objects kept current by list + watch (`informer.Informer`).

Controllers and the scheduler read from informers and write through `controlplane.objects`;
one informer per kind is shared by every consumer in the process (wired in `main.py`).
"""
