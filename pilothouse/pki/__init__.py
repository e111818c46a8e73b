"""The cluster PKI: one CA, the certificates it issues, and who a certificate says you are.

- `identity`: who a client certificate names (`Identity`, its `Role`, the well-known ones);
- `issue`: the CA and the certificates it issues (serving, client, node from a CSR);
- `verify`: checks on certificates: issued by the CA, CA hash, when to renew;
- `pem`: keys and certificates as PEM bytes and as files (`Issued`, `PkiError`).

Vocabulary:
- CA: the cluster's self-signed ECDSA P-256 certificate authority (`ca.crt`, `ca.key`).
- serving certificate: the control plane's TLS server certificate. Besides the hosts given, its
  SANs always hold `localhost`, `127.0.0.1` and `SERVER_NAME`, the name clients verify (they set
  it as the TLS target name), so one certificate works whatever address a node dials.
- client certificate: an identity. Its subject CN is the user, its O values are the groups:
  admin `CN=admin, O=system:masters`; node `CN=system:node:<name>, O=system:nodes`; the control
  plane calling agents `CN=pilothouse-controlplane, O=system:controlplane`.
- node certificate: a client certificate that also serves the node's agent (serverAuth with a
  DNS SAN equal to the node name, which the control plane verifies as the target name).
- CA hash: `sha256:<hex>` of the DER SubjectPublicKeyInfo of the CA, exactly kubeadm's
  `--discovery-token-ca-cert-hash`.

Invariants: everything here is pure data work (no sockets, no grpc); times come from the caller
(`now`) so tests can move the clock; private keys are only ever written with mode 0600.

The names below are the package's API (`pki.Identity`, `pki.create_ca` …); each sub-module is
imported when one of its names is first used.
"""

from typing import TYPE_CHECKING

from pilothouse import lazy

if TYPE_CHECKING:
    from pilothouse.pki.identity import (
        ADMIN,
        ADMIN_USER,
        CONTROLPLANE,
        CONTROLPLANE_GROUP,
        CONTROLPLANE_USER,
        MASTERS_GROUP,
        NODE_USER_PREFIX,
        NODES_GROUP,
        SERVER_NAME,
        Identity,
        Role,
        node_identity,
    )
    from pilothouse.pki.issue import (
        CA_VALIDITY,
        CLIENT_VALIDITY,
        NODE_VALIDITY,
        SERVING_VALIDITY,
        check_node_name,
        create_ca,
        create_csr,
        issue_client,
        issue_for,
        issue_serving,
        sign_node_csr,
        subject_alt_names,
        utcnow,
    )
    from pilothouse.pki.pem import (
        Issued,
        PkiError,
        cert_pem,
        key_pem,
        load_cert,
        load_key,
        new_key,
        write_cert,
        write_key,
        write_secret,
    )
    from pilothouse.pki.verify import (
        ca_cert_hash,
        check_hash_format,
        issued_at,
        needs_renewal,
        not_after,
        renewal_time,
        verify_issued_by,
    )

# Each name's sub-module, imported on first use (PEP 562): `pki.SERVER_NAME` costs no
# cryptography, so a CLI command that only hands PEM files to gRPC never loads it.
_HOME = {
    "ADMIN": "identity",
    "ADMIN_USER": "identity",
    "CONTROLPLANE": "identity",
    "CONTROLPLANE_GROUP": "identity",
    "CONTROLPLANE_USER": "identity",
    "MASTERS_GROUP": "identity",
    "NODE_USER_PREFIX": "identity",
    "NODES_GROUP": "identity",
    "SERVER_NAME": "identity",
    "Identity": "identity",
    "Role": "identity",
    "node_identity": "identity",
    "CA_VALIDITY": "issue",
    "CLIENT_VALIDITY": "issue",
    "NODE_VALIDITY": "issue",
    "SERVING_VALIDITY": "issue",
    "check_node_name": "issue",
    "create_ca": "issue",
    "create_csr": "issue",
    "issue_client": "issue",
    "issue_for": "issue",
    "issue_serving": "issue",
    "sign_node_csr": "issue",
    "subject_alt_names": "issue",
    "utcnow": "issue",
    "Issued": "pem",
    "PkiError": "pem",
    "cert_pem": "pem",
    "key_pem": "pem",
    "load_cert": "pem",
    "load_key": "pem",
    "new_key": "pem",
    "write_cert": "pem",
    "write_key": "pem",
    "write_secret": "pem",
    "ca_cert_hash": "verify",
    "check_hash_format": "verify",
    "issued_at": "verify",
    "needs_renewal": "verify",
    "not_after": "verify",
    "renewal_time": "verify",
    "verify_issued_by": "verify",
}


__getattr__ = lazy.attributes(
    __name__, {name: f"{__name__}.{home}" for name, home in _HOME.items()}
)


__all__ = [
    "ADMIN",
    "ADMIN_USER",
    "CA_VALIDITY",
    "CLIENT_VALIDITY",
    "CONTROLPLANE",
    "CONTROLPLANE_GROUP",
    "CONTROLPLANE_USER",
    "MASTERS_GROUP",
    "NODES_GROUP",
    "NODE_USER_PREFIX",
    "NODE_VALIDITY",
    "SERVER_NAME",
    "SERVING_VALIDITY",
    "Identity",
    "Issued",
    "PkiError",
    "Role",
    "ca_cert_hash",
    "cert_pem",
    "check_hash_format",
    "check_node_name",
    "create_ca",
    "create_csr",
    "issue_client",
    "issue_for",
    "issue_serving",
    "issued_at",
    "key_pem",
    "load_cert",
    "load_key",
    "needs_renewal",
    "new_key",
    "node_identity",
    "not_after",
    "renewal_time",
    "sign_node_csr",
    "subject_alt_names",
    "utcnow",
    "verify_issued_by",
    "write_cert",
    "write_key",
    "write_secret",
]
