"""Opacus, imported without its logging side effect.

`opacus.utils.module_utils` calls `logging.basicConfig` when imported, which gives the
root logger a stderr handler: every Flower and Ray log line of the process is then
printed twice, DEBUG lines included. Importing this module imports Opacus once and
takes that handler back; import it before any `opacus` import. Modules import it
lazily where they can: Opacus adds about a second to each process that loads it, and
every Flower ClientApp message is a fresh process.
"""

from __future__ import annotations

import logging

_root = logging.getLogger()
_before = list(_root.handlers)
import opacus  # noqa: E402, F401  (the import whose side effect is undone below)

for _handler in list(_root.handlers):
    if _handler not in _before:
        _root.removeHandler(_handler)
