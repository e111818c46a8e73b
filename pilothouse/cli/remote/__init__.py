"""Installing Pilothouse on other machines over SSH: `pilothouse node add|remove` and
`pilothouse controlplane install` (the CLI owns this package; neither process imports it).

`ssh` connects (asyncssh) and verifies the host key against known_hosts, or records a new one
with `--accept-new` as OpenSSH does; `checks` asks the host what it is and says, in one line,
everything that keeps it from running an agent or a control plane; `wheels` builds Pilothouse
and its Python dependencies into wheels on this machine (nothing is downloaded on the host);
`install` puts a role on a host step by step (packages, wheels, virtualenv, files, unit) and
`verbs` holds the commands, with one progress line per host.

Vocabulary, used the same way in every module here:
- *target*: `USER@HOST[:PORT]` as given on the command line;
- *host*: the machine at a target, reached over one SSH connection;
- *role*: what is installed there: `agent` (a node) or `controlplane`;
- *step*: one part of an installation that checks before it changes (it says whether it
  changed anything), so running an installation twice changes nothing the second time and a
  failed one can be run again from the start.
"""
