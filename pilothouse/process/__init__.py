"""Process plumbing shared by the control plane and the node agent: how a long-lived process
runs its parts, stops on a signal, says where it serves, and serves gRPC.

- `runnable`: the parts of a process (`Runnable`, `Task`) run together by `run_all`; a part
  that stops on its own stops the process, loudly (`RunnableExited`).
- `signals`: SIGTERM and SIGINT cancel the process's main coroutine once, so it cleans up.
- `addressfile`: the one-line "HOST:PORT" files a process writes once it serves
  (`controlplane.addr`, `agent.addr`), which launchers and tests wait for.
- `grpcserver`: the shared server options, binding with a clear `BindError`, and `Server`,
  a grpc.aio server that starts, serves as a runnable and stops with a grace period.

Nothing here knows either process; both `main.py`s wire these pieces by hand.
"""
