"""What the controller writes to a traffic router, one module per router: the canary
Ingress for ingress-nginx (:mod:`.nginx`), the VirtualService routes and DestinationRule
subsets for Istio (:mod:`.istio`). Pure builders and cache lookups; when to call them is
the sync's business (:mod:`pytest_canary.dataplane.argo_rollouts.sync.traffic`)."""
