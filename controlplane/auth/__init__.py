"""Who may call the control plane, and how a node gets the certificate that says who it is.

Vocabulary (see also pilothouse.pki):
- identity: the user and groups of a verified client certificate (`pilothouse.pki.Identity`);
  no certificate means anonymous.
- join port: a TLS port that asks for no client certificate; only `Join` may be called there.
  The API port requires a client certificate signed by the cluster CA (mutual TLS).
- bootstrap token: `<id>.<secret>`, exchanged once for a node certificate (`tokens`).

Parts: `tokens` (TokenStore), `authorizer` (the per-RPC policy and its grpc.aio interceptor),
`servicer` (the Join and Tokens services), `bootstrap` (the PKI files under the data dir).
Invariant: every call of every service passes the authorizer; nothing is allowed by default.
"""
