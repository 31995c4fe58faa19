"""The skips a CI run allows; any other skip fails it (issue 13: no test hidden by a silent skip).

With ``CI=true``, tests/conftest.py collects every skip of the run and matches its reason against
``ALLOWED``: a skip is allowed only when its reason matches the pattern AND the entry's condition
holds in this environment. The run fails, and lists them, when any skip is not allowed. Outside CI
nothing changes: skips are listed by ``-rs`` and the run passes.

Keep the list short. To add an entry: a pattern that matches only the skip you mean (anchor it), the
condition under which that skip is by design, and why the case is still covered.
"""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass


def _no_torch() -> bool:
    return importlib.util.find_spec("torch") is None


def _root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _others_cannot_reach_the_repo() -> bool:
    """Whether some folder on the way to this checkout (or to its interpreter) is closed to other users,
    as a checkout made in a ``mktemp -d`` folder is: then the user nobody cannot run onnxvis at all."""
    import stat
    import sys
    from pathlib import Path

    for start in (Path(__file__).resolve().parent, Path(sys.executable).parent):
        for folder in [start, *start.parents]:
            try:
                if not folder.stat().st_mode & stat.S_IXOTH:
                    return True
            except OSError:
                return True
    return False


@dataclass(frozen=True)
class AllowedSkip:
    pattern: str  # a regular expression, matched at the start of the skip's reason
    when: Callable[[], bool]  # the environment in which this skip is by design
    why: str

    def allows(self, reason: str) -> bool:
        return re.match(self.pattern, reason) is not None and self.when()


# The reference tools that come only with torch, in the full environment: torch, torchvision, the
# exporter's onnxscript, pytorch-grad-cam and the OpenCV it brings, and Captum.
_TORCH_ONLY = r"(torch|torchvision|onnxscript|pytorch_grad_cam|cv2|captum)"

ALLOWED = [
    AllowedSkip(
        rf"could not import '{_TORCH_ONLY}(\.[\w.]+)?': No module named '{_TORCH_ONLY}(\.[\w.]+)?'",
        _no_torch,
        "the core environment (.venv-core) has no torch by design; the full environment runs these tests",
    ),
    AllowedSkip(
        r"exporting needs torch \(the full environment\)",
        _no_torch,
        "the same: a torch-only test with its own reason",
    ),
    AllowedSkip(
        r"torch is installed here; the shim test above covers this case",
        lambda: not _no_torch(),
        "the mirror image: a test of the core without torch, which the core environment runs "
        "(tests/test_classes.py; a shim hides torch for the same case in the full environment)",
    ),
    AllowedSkip(
        r"could not import 'ray': No module named 'ray'",
        lambda: importlib.util.find_spec("ray") is None,
        "Ray is the ray extra, installed in the full environment only; tests/test_examples_ray.py runs there",
    ),
    AllowedSkip(
        r"the user nobody cannot run onnxvis here",
        _others_cannot_reach_the_repo,
        "only where a folder on the way to the checkout is closed to other users (.ci/run opens the checkout "
        "itself; a private parent folder it cannot change); the unwritable-folder case is then left to test_output.py",
    ),
    AllowedSkip(
        r"root can write anywhere",
        _root,
        "as root the unwritable-folder case runs as the user nobody instead (tests/test_cli_errors.py)",
    ),
    AllowedSkip(
        r"needs root, to run onnxvis as the user nobody",
        lambda: not _root(),
        "not as root, the unwritable-folder case runs directly (tests/test_output.py)",
    ),
]


def reason_of(longrepr: object) -> str:
    """The reason of a skip report's ``longrepr`` (a (path, line, "Skipped: reason") tuple)."""
    text = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    return str(text).removeprefix("Skipped: ")


def not_allowed(reasons: Iterable[str], allowed: Iterable[AllowedSkip] = ALLOWED) -> list[str]:
    """The reasons that no entry of ``allowed`` allows here, in order."""
    entries = list(allowed)
    return [reason for reason in reasons if not any(entry.allows(reason) for entry in entries)]
