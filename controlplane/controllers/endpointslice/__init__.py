"""The EndpointSlice controller: each Service with a selector has EndpointSlices listing the
pods it selects, with their readiness, as Kubernetes' endpointslice controller keeps them.

Modules, in the order a pass uses them:
- `endpoints`: pure: one pod as an endpoint (ready, serving, terminating), its ports resolved
  (a targetPort name per pod), and the slices a Service's endpoints should fill;
- `controller`: the reconciler (which Service a change concerns; the pass), its own writes
  remembered until the informer shows them, and `endpointslice_controller`, which wires it
  to the engine and the informers.
"""

from controlplane.controllers.endpointslice.controller import (
    EndpointSliceReconciler,
    endpointslice_controller,
)

__all__ = ["EndpointSliceReconciler", "endpointslice_controller"]
