"""The CLI's logs without --debug: warnings only, on stderr, even when structlog is first
imported after start-up (a command that never logs does not load it at all)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import sys
    from pilothouse.cli import main
    main._quiet_logs(debug=False)
    main._quiet_logs(debug=False)  # again, as a second in-process command would
    print("loaded before use:", "structlog" in sys.modules)
    import structlog
    structlog.get_logger("t").info("hidden-info")
    structlog.get_logger("t").warning("shown-warning")
    """
)


def test_structlog_imported_late_is_configured_quietly() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "loaded before use: False", done.stdout
    assert "shown-warning" in done.stderr
    assert "hidden-info" not in done.stderr + done.stdout


def test_get_pods_loads_no_structlog_and_no_cryptography() -> None:
    script = (
        "import sys, io\n"
        "from pilothouse.cli import main\n"
        "main.main(['--server', '127.0.0.1:1', 'get', 'pods'], out=io.StringIO(),"
        " err=io.StringIO())\n"
        "print(sorted({n.split('.')[0] for n in sys.modules} & {'structlog', 'cryptography'}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout
