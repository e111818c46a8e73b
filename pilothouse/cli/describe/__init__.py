"""`pilothouse describe KIND NAME`: one object as a readable multi-section page, with its events.

- `verbs`: the command line and `page`, which picks the kind's sections;
- `sections`: what every kind shows the same way: metadata, conditions, events;
- `workloads`: Deployments, ReplicaSets, Pods and their containers;
- `nodes`: Nodes with the pods they run and the resources those pods ask for;
- `services`: Services with their ports and ready endpoints, EndpointSlices.

Invariants: the sections and their order follow kubectl describe for the kind; the Events
section lists the events whose involvedObject is this object (by kind and name, and uid when
both carry one), oldest first by last timestamp; a pod's conditions show why they are not
True (reason and message, e.g. "containers with unready status: [app]"). What cannot be
read (events, replica sets, pods of a node) is left out rather than failing the page.
"""
