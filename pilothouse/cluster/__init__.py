"""The one-command local cluster: `pilothouse up` and `pilothouse down`.

Vocabulary, used the same way in every module of this package:
- *data dir*: the one directory a local cluster owns (`layout.Layout` names every path in it);
  nothing the cluster makes on disk lives outside it, except cgroups under the cluster's own
  cgroup parent and the client config file, which records the server address.
- *child*: a long-lived process that `up` starts and supervises (`supervisor.Supervisor`):
  the registry, the control plane, one agent per node. Each has a pid file in the data dir.
- *node host*: where an agent runs and the address it has there (`hosts.NodeHost`): the host's
  own network today, a network namespace of its own later.

Invariant: `pilothouse` never imports the control plane or the agent: they are children,
started as `python3 -m controlplane` / `python3 -m nodeagent`, and reached only over gRPC.
"""
