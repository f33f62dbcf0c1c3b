"""The notebooks in colab/ run top to bottom, with their parameter cell made small."""

import nbformat
import pytest
from conftest import REPO
from nbclient import NotebookClient

SMALL = {"quickstart.ipynb": 'EEJAX_SOURCE = None\nDATASET, DATA_DIR = "mnist_5k", None\n'
                             "STEPS, BATCH, WIDTH = 10, 32, 4"}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SMALL))
def test_notebook_runs_in_small_mode(name, tmp_path):
    notebook = nbformat.read(REPO / "colab" / name, as_version=4)
    parameters = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(parameters) == 1, "a notebook needs exactly one cell tagged 'parameters'"
    parameters[0].source = SMALL[name]
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = "".join(o.get("text", "") for c in notebook.cells for o in c.get("outputs", []))
    assert "accuracy of each exit" in outputs and "ideal_speedup" in outputs
    assert (tmp_path / "accuracy_vs_flops.png").exists()
