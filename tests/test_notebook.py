"""The notebook tour: committed without outputs, twin of its .py source, and it runs.

The notebook runs headlessly in a kernel on this interpreter, with a short training
run (``CHIRAL_TOUR_STEPS``) and its figures written to a temporary folder.
"""

import pathlib
import sys

import jupytext
import nbformat
import pytest
from ipykernel.kernelspec import write_kernel_spec
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

NOTEBOOKS = pathlib.Path(__file__).resolve().parents[1] / "notebooks"
IPYNB = NOTEBOOKS / "chirality_tour.ipynb"
TWIN = NOTEBOOKS / "chirality_tour.py"
FIGURES = ("toy_pose", "equivariance", "kernel_toy", "kernel_h36m", "lifting")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _cells(nb) -> list[tuple[str, str]]:
    return [(cell.cell_type, cell.source) for cell in nb.cells]


def test_committed_notebook_has_no_outputs():
    nb = nbformat.read(IPYNB, as_version=4)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code, "the notebook has no code cells"
    for i, cell in enumerate(code):
        assert cell.outputs == [], f"code cell {i} has committed outputs"
        assert cell.execution_count is None, f"code cell {i} has an execution count"


def test_notebook_is_the_twin_of_its_py_source():
    nb = nbformat.read(IPYNB, as_version=4)
    twin = jupytext.read(TWIN)
    assert _cells(nb) == _cells(twin), (
        "notebooks/chirality_tour.ipynb is out of date: regenerate it with "
        "`jupytext --to ipynb notebooks/chirality_tour.py`"
    )


def _kernel_manager(folder: pathlib.Path) -> KernelManager:
    """A kernel on this interpreter (``sys.executable``), whatever kernels are installed."""
    write_kernel_spec(folder / "tour")
    specs = KernelSpecManager(kernel_dirs=[str(folder)], ensure_native_kernel=False)
    return KernelManager(kernel_name="tour", kernel_spec_manager=specs)


@pytest.mark.slow
def test_notebook_runs_and_draws_its_figures(tmp_path, monkeypatch):
    out = tmp_path / "figures"
    monkeypatch.setenv("CHIRAL_TOUR_OUT", str(out))
    monkeypatch.setenv("CHIRAL_TOUR_STEPS", "10")
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    monkeypatch.setenv("JAX_NUMPY_RANK_PROMOTION", "raise")
    nb = nbformat.read(IPYNB, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("import sys\nprint(sys.executable)"))
    client = NotebookClient(
        nb,
        km=_kernel_manager(tmp_path / "kernels"),
        timeout=300,
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    client.execute()  # raises CellExecutionError, naming the cell, if any cell fails

    errors = [
        o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"
    ]
    assert not errors
    assert nb.cells[-1].outputs[0].text.strip() == sys.executable
    for name in FIGURES:
        png = out / f"{name}.png"
        assert png.is_file(), f"the notebook did not save {png.name}"
        assert png.read_bytes()[:8] == PNG_MAGIC, f"{png.name} is not a PNG"
