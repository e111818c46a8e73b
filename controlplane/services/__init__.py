"""Services in the control plane: the ranges their addresses come from, and who holds what.

Vocabulary (Kubernetes' words):
- service CIDR (`--service-cluster-ip-range`, default 10.96.0.0/16): where ClusterIPs live;
- node-port range (`--service-node-port-range`, default 30000-32767): where NodePorts live;
- allocation: one key per address or port held, `/pilothouse/ranges/serviceips/<ip>` or
  `/pilothouse/ranges/servicenodeports/<port>`, naming the Service that holds it
  ("namespace/name"). Creating the key is the reservation (create-if-absent, a
  compare-and-swap), so two Services never get the same one, whatever the number of control
  planes, and a restarted control plane knows exactly what is taken (Kubernetes' own
  IPAddress objects, one per allocated IP, follow the same design).

Modules: `settings` (the flags), `allocator` (reserve, allocate, release over the store),
`addresses` (what an Apply or Delete of a Service takes or gives back, with field paths),
`repair` (the periodic pass that frees what a crash left reserved and re-reserves what a
stored Service holds without a key).

Invariants: a Service's clusterIP and nodePorts never change once allocated (a manifest that
omits them keeps them); a requested one is refused with its field path when it lies outside
its range or another Service holds it; nothing is reserved for a dry run or a refused Apply.
"""
