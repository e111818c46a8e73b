"""Syntax of names, label keys and label values, with Kubernetes' own error wording; and the
names Kubernetes makes up (generateName, a pod's hostname), cut to length as it cuts them.

Invariants: every check returns a list of messages (empty when valid) worded as Kubernetes'
apimachinery validation words them, so a person who knows kubectl recognises them. A
generated name is at most 63 characters whatever its base (the base is cut to 58, then 5
random characters of the safe alphabet follow); a hostname is at most 63 characters and never
ends with '-' or '.'.
"""

from __future__ import annotations

import re

_DNS1123_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN = rf"{_DNS1123_LABEL}(\.{_DNS1123_LABEL})*"
_QUALIFIED_NAME = r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_VALUE = rf"({_QUALIFIED_NAME})?"
_IANA_SVC_NAME = r"[-a-z0-9]+"
_ENV_VAR_NAME = r"[-._a-zA-Z][-._a-zA-Z0-9]*"

_dns1123_label = re.compile(f"^{_DNS1123_LABEL}$")
_dns1123_subdomain = re.compile(f"^{_DNS1123_SUBDOMAIN}$")
_qualified_name = re.compile(f"^{_QUALIFIED_NAME}$")
_label_value = re.compile(f"^{_LABEL_VALUE}$")
_env_var_name = re.compile(f"^{_ENV_VAR_NAME}$")


def _shaped(value: str, *, limit: int, pattern: re.Pattern[str], shape: str) -> list[str]:
    """The length check and the regex check every name syntax shares; `shape` is the message."""
    errors = []
    if len(value) > limit:
        errors.append(f"must be no more than {limit} characters")
    if not pattern.match(value):
        errors.append(shape)
    return errors


def dns1123_label(value: str) -> list[str]:
    """A DNS-1123 label: container names, namespaces, port names' shape."""
    return _shaped(
        value,
        limit=63,
        pattern=_dns1123_label,
        shape="a lowercase RFC 1123 label must consist of lower case alphanumeric characters or "
        "'-', and must start and end with an alphanumeric character (e.g. 'my-name',  or "
        f"'123-abc', regex used for validation is '{_DNS1123_LABEL}')",
    )


def dns1123_subdomain(value: str) -> list[str]:
    """A DNS-1123 subdomain: the names of Deployments, Pods, Nodes."""
    return _shaped(
        value,
        limit=253,
        pattern=_dns1123_subdomain,
        shape="a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
        "characters, '-' or '.', and must start and end with an alphanumeric character (e.g. "
        f"'example.com', regex used for validation is '{_DNS1123_SUBDOMAIN}')",
    )


def qualified_name(value: str) -> list[str]:
    """A label or annotation key: an optional DNS-1123 subdomain prefix, "/", and a name."""
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            return ["prefix part must be non-empty"]
        prefix_errors = dns1123_subdomain(prefix)
        if prefix_errors:
            return [f"prefix part {e}" for e in prefix_errors]
    else:
        return [
            "a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must "
            "start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or "
            f"'123-abc', regex used for validation is '{_QUALIFIED_NAME}') with an optional DNS "
            "subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ]
    if not name:
        return ["name part must be non-empty"]
    errors = _shaped(
        name,
        limit=63,
        pattern=_qualified_name,
        shape="must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
        "with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex "
        f"used for validation is '{_QUALIFIED_NAME}')",
    )
    return [f"name part {e}" for e in errors]


def label_value(value: str) -> list[str]:
    """A label's value: empty, or a qualified name's name part."""
    return _shaped(
        value,
        limit=63,
        pattern=_label_value,
        shape="a valid label must be an empty string or consist of alphanumeric characters, "
        "'-', '_' or '.', and must start and end with an alphanumeric character (e.g. "
        "'MyValue',  or 'my_value',  or '12345', regex used for validation is "
        f"'{_LABEL_VALUE}')",
    )


def port_name(value: str) -> list[str]:
    """An IANA service name, as Kubernetes requires of container port names."""
    errors = []
    if len(value) > 15:
        errors.append("must be no more than 15 characters")
    if not re.match(f"^{_IANA_SVC_NAME}$", value):
        errors.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if "--" in value:
        errors.append("must not contain consecutive hyphens")
    if not re.search("[a-z]", value):
        errors.append("must contain at least one letter (a-z)")
    if value.startswith("-") or value.endswith("-"):
        errors.append("must not begin or end with a hyphen")
    return errors


def env_var_name(value: str) -> list[str]:
    if _env_var_name.match(value):
        return []
    return [
        "a valid environment variable name must consist of alphabetic characters, digits, '_', "
        "'-', or '.', and must not start with a digit (e.g. 'my.env-name',  or 'MY_ENV.NAME',  "
        f"or 'MyEnvName1', regex used for validation is '{_ENV_VAR_NAME}')"
    ]


# -- names Kubernetes makes up -------------------------------------------------------------

# Kubernetes' utilrand alphabet: no vowels (no words), no 0/1/3 (no look-alikes).
SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
MAX_NAME_LENGTH = 63  # a DNS label; also the longest generated name
RANDOM_LENGTH = 5
MAX_GENERATED_BASE = MAX_NAME_LENGTH - RANDOM_LENGTH  # 58


def random_suffix(length: int = RANDOM_LENGTH) -> str:
    import secrets  # only when a name is made: a CLI that reads names needs no CSPRNG

    return "".join(secrets.choice(SAFE_ALPHABET) for _ in range(length))


def generate(base: str) -> str:
    """A name for `metadata.generateName` = `base`, as the API server makes it
    (apiserver's SimpleNameGenerator): the base cut to 58 characters, then 5 random ones."""
    return base[:MAX_GENERATED_BASE] + random_suffix()


def with_suffix(base: str, suffix: str, *, limit: int = 253) -> str:
    """`<base>-<suffix>` in at most `limit` characters: the base is cut (and a cut never
    leaves it ending with '.' or '-'), the suffix kept whole. For names derived from another
    object's name, such as a ReplicaSet's from its Deployment's."""
    room = limit - len(suffix) - 1
    if len(base) > room:
        base = base[:room].rstrip(".-")
    return f"{base}-{suffix}"


def hostname(name: str) -> str:
    """A pod's hostname from its name or spec.hostname, as the kubelet makes it: at most 63
    characters, without a trailing '-' or '.' once cut (sethostname refuses longer ones)."""
    if len(name) <= MAX_NAME_LENGTH:
        return name
    return name[:MAX_NAME_LENGTH].rstrip("-.")
