"""keras-hub, torch and transformers are references for tests and benchmarks, never runtime dependencies:
not in requirements.txt, and no module of the package imports them."""

import os
import subprocess
import sys

from processes import REPO, subprocess_env

REFERENCES = ("keras_hub", "keras-hub", "torch", "transformers")


def requirement_names(name):
    with open(os.path.join(REPO, name), encoding="utf-8") as handle:
        lines = [line.split("#")[0].strip() for line in handle]
    return {line.split("==")[0].strip().lower() for line in lines if line}


def test_references_are_test_extras_not_requirements():
    runtime, test = requirement_names("requirements.txt"), requirement_names("requirements-test.txt")
    assert not runtime & set(REFERENCES), runtime & set(REFERENCES)
    assert {"keras-hub", "torch", "transformers"} <= test


def test_importing_every_module_of_the_package_imports_no_reference():
    code = (
        "import importlib, pkgutil, sys\n"
        "import rubert_tf\n"
        "names = [m.name for m in pkgutil.walk_packages(rubert_tf.__path__, 'rubert_tf.')]\n"
        "for name in names:\n"
        "    importlib.import_module(name)\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {REFERENCES!r})\n"
        "print(len(names), bad)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                            env=subprocess_env(), cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    count, bad = result.stdout.strip().split(" ", 1)
    assert int(count) > 50 and bad == "[]", result.stdout
