"""Rollout verbs done on the client side, as kubectl does them: status, history, undo, pause,
resume, restart and set image.

- `revisions`: a Deployment's revisions (its ReplicaSets, numbered by annotation), read and
  write with the `Client`;
- `status`: kubectl's rollout status, once or following a watch;
- `history`: the revisions as rows, kubectl's table, one revision in full;
- `changes`: the verbs that change a Deployment (undo, pause, resume, restart, set image);
- `errors`: what the verbs raise, with kubectl's wording;
- `verbs`: the command line (`pilothouse rollout …`) over the modules above.

The names below are the package's API (`rollout.status_of`, `rollout.undo` …), so callers need
not know which module holds them. Status messages are kubectl's, word for word.
"""

from pilothouse.cli.rollout.changes import (
    parse_images,
    paused,
    restart,
    restarted,
    rolled_back,
    set_image,
    set_paused,
    undo,
    undo_target,
    with_images,
)
from pilothouse.cli.rollout.errors import RolloutError, RolloutFailed, RolloutTimeout
from pilothouse.cli.rollout.history import (
    HistoryRow,
    history_rows,
    history_table,
    revision_detail,
)
from pilothouse.cli.rollout.revisions import (
    CHANGE_CAUSE,
    HASH_LABEL,
    ORIGINAL_IMAGE,
    RESTARTED_AT,
    REVISION,
    owned,
    read,
    revision_of,
    template_of,
    write,
)
from pilothouse.cli.rollout.status import TIMED_OUT, RolloutStatus, status_of, watch_status

__all__ = [
    "CHANGE_CAUSE",
    "HASH_LABEL",
    "ORIGINAL_IMAGE",
    "RESTARTED_AT",
    "REVISION",
    "TIMED_OUT",
    "HistoryRow",
    "RolloutError",
    "RolloutFailed",
    "RolloutStatus",
    "RolloutTimeout",
    "history_rows",
    "history_table",
    "owned",
    "parse_images",
    "paused",
    "read",
    "restart",
    "restarted",
    "revision_detail",
    "revision_of",
    "rolled_back",
    "set_image",
    "set_paused",
    "status_of",
    "template_of",
    "undo",
    "undo_target",
    "watch_status",
    "with_images",
    "write",
]
