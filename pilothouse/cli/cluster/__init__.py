"""The one-command local cluster: `pilothouse up` and `pilothouse down` (`verbs`), also run as
`python3 -m pilothouse.cli.cluster up|down` (what a detached `up` re-executes).

The CLI owns this package; neither process imports it. `local` is the entry (up, down),
`parts` starts and stops the children, `hosts` places the nodes (on the machine's network or
in network namespaces made by `netns` with the `iproute` commands), `supervisor` and
`processes` keep the children alive and find their leftovers, `cleanup` removes what a cluster
made, `layout` names every path in the data dir.

Vocabulary, used the same way in every module of this package:
- *data dir*: the one directory a local cluster owns (`layout.Layout` names every path in it);
  nothing the cluster makes on disk lives outside it, except cgroups under the cluster's own
  cgroup parent and the client config file, which records the server address.
- *child*: a long-lived process that `up` starts and supervises (`supervisor.Supervisor`):
  the registry, the control plane, one agent per node. Each has a pid file in the data dir.
- *node host*: where an agent runs and the address it has there (`hosts.NodeHost`): the host's
  own network (`--network host`), or a network namespace of its own (the default).

Invariant: `pilothouse` never imports the control plane or the agent: they are children,
started as `python3 -m controlplane` / `python3 -m nodeagent`, and reached only over gRPC.
"""
