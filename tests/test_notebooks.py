"""Every notebook in notebooks/ runs top to bottom, small and offline, and is stored without outputs.

Each notebook is executed with nbclient on a kernel that is this interpreter (a kernelspec written to a
temporary JUPYTER_PATH), in a temporary working folder, with CI=true in the kernel's environment and, as
papermill does, an injected cell after the "parameters" cell that sets SMALL = OFFLINE = True. So nothing is
downloaded: each notebook builds its tiny checkpoint from the package's sample corpus. A failing cell fails
the test with the cell's source and the error (nbclient's CellExecutionError).
"""

import glob
import json
import os
import shutil
import subprocess
import sys
import time

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK_DIR = os.path.join(REPO, "notebooks")
NOTEBOOKS = sorted(glob.glob(os.path.join(NOTEBOOK_DIR, "*.ipynb")))
KERNEL = "rubert-tf-test"
CELL_TIMEOUT = 600
INJECTED = "# Injected by tests/test_notebooks.py (as papermill's injected-parameters)\nSMALL = True\nOFFLINE = True"


def test_every_notebook_is_there_and_generated():
    names = [os.path.basename(path) for path in NOTEBOOKS]
    for prefix in ("01_", "02_", "03_", "04_", "05_", "06_", "07_", "08_"):
        assert any(name.startswith(prefix) for name in names), (prefix, names)
    check = subprocess.run([sys.executable, os.path.join(REPO, "tools", "make_notebooks.py"), "--check"],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.parametrize("path", NOTEBOOKS, ids=os.path.basename)
def test_notebook_is_stripped_and_colab_ready(path):
    notebook = nbformat.read(path, as_version=4)
    first = notebook.cells[0]
    assert first.cell_type == "markdown" and "colab-badge.svg" in first.source
    parameters = [cell for cell in notebook.cells if "parameters" in cell.metadata.get("tags", [])]
    assert len(parameters) == 1 and "SMALL" in parameters[0].source and "OFFLINE" in parameters[0].source
    assert any('REPO = "https://github.com/' in cell.source for cell in notebook.cells if cell.cell_type == "code")
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, "outputs must be stripped"


@pytest.fixture(scope="module")
def kernel_name(tmp_path_factory):
    """A kernelspec for this interpreter, so the notebooks run in the test's venv."""
    jupyter_path = tmp_path_factory.mktemp("jupyter")
    spec_dir = jupyter_path / "kernels" / KERNEL
    spec_dir.mkdir(parents=True)
    spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "rubert_tf test", "language": "python"}
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    old = {key: os.environ.get(key) for key in ("JUPYTER_PATH", "CI", "TF_CPP_MIN_LOG_LEVEL", "CUDA_VISIBLE_DEVICES",
                                                 "PYTHONPATH", "HF_HUB_OFFLINE")}
    os.environ.update(JUPYTER_PATH=str(jupyter_path), CI="true", TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="-1",
                      HF_HUB_OFFLINE="1", PYTHONPATH=REPO + os.pathsep + (old["PYTHONPATH"] or ""))
    yield KERNEL
    for key, value in old.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def inject_parameters(notebook):
    index = next(i for i, cell in enumerate(notebook.cells) if "parameters" in cell.metadata.get("tags", []))
    cell = nbformat.v4.new_code_cell(INJECTED)
    cell.metadata["tags"] = ["injected-parameters"]
    notebook.cells.insert(index + 1, cell)
    return notebook


@pytest.mark.parametrize("path", NOTEBOOKS, ids=os.path.basename)
def test_notebook_runs_small_and_offline(path, kernel_name, tmp_path):
    notebook = inject_parameters(nbformat.read(path, as_version=4))
    # the working folder mimics notebooks/ inside a checkout (the install cell's `pip install -e ..`)
    work = tmp_path / "notebooks"
    work.mkdir()
    started = time.time()
    client = nbclient.NotebookClient(notebook, kernel_name=kernel_name, timeout=CELL_TIMEOUT,
                                     resources={"metadata": {"path": str(work)}})
    client.execute()
    print(f"{os.path.basename(path)}: {time.time() - started:.1f}s")
    outputs = "".join(output.get("text", "") for cell in notebook.cells if cell.cell_type == "code"
                      for output in cell.outputs)
    assert "model: tiny-rubert" in outputs or "07_" in path or "05_" in path, outputs[-2000:]
