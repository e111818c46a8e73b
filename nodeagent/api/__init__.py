"""The node agent's gRPC edge: `servicer.NodeAgentServicer` (decode, call PodManager, encode),
`server.agent_server` (binding and serving), `nodeinfo` (what the node reports about itself).

Invariant: the only package of the agent that imports grpc or the request/response messages.
"""
