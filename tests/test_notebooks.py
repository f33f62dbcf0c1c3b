"""The notebooks in colab/ run top to bottom, with their parameter cell made small (each well
under the 5 minutes CI allows: about a minute on the 2-core CPU)."""

import nbformat
import pytest
from conftest import REPO
from nbclient import NotebookClient

SMALL = {
    "quickstart.ipynb": 'EEJAX_SOURCE = None\nDATASET, DATA_DIR = "mnist_5k", None\n'
                        "STEPS, BATCH, WIDTH = 10, 32, 4",
    "objectives.ipynb": 'EEJAX_SOURCE = None\nDATASET, DATA_DIR = "mnist_5k", None\n'
                        "STEPS, BATCH, WIDTH, JEI_TRADEOFF = 6, 32, 4, 0.1",
}
EXPECTED = {
    "quickstart.ipynb": (["accuracy of each exit", "ideal_speedup", "samples/s"],
                         "accuracy_vs_flops.png"),
    "objectives.ipynb": (["joint ", "boosted ", "jei ", "coverage"], "objectives.png"),
}


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
    texts, plot = EXPECTED[name]
    for text in texts:
        assert text in outputs, f"{name} printed no {text!r}"
    assert (tmp_path / plot).stat().st_size > 1000
