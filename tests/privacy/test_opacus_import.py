"""Opacus is loaded only by DP code, and without the root log handler its import adds."""

from __future__ import annotations

import subprocess
import sys


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )


def test_dp_code_leaves_the_root_logger_alone():
    done = _run(
        "import logging, shared.privacy.trainer, opacus.utils.module_utils\n"
        "assert not logging.getLogger().handlers, logging.getLogger().handlers"
    )
    assert done.returncode == 0, done.stderr


def test_a_non_dp_clientapp_and_serverapp_do_not_import_opacus():
    done = _run(
        "import sys, client.client_app, server.server_app, simulations.federated\n"
        "assert 'opacus' not in sys.modules"
    )
    assert done.returncode == 0, done.stderr
