"""The notebooks: committed clean and Colab-ready, and executed top to bottom in small mode.

Every `notebooks/*.ipynb` is picked up by the glob, so a new notebook is tested by adding the
file. Execution uses nbclient with the `python3` kernelspec of ipykernel, which jupyter_client
starts with this interpreter (`sys.executable`); `test_kernel_is_this_python` checks that,
and that the kernel imports this checkout of keras_resnet. Executed copies are written to
pytest's tmp_path (kept for the last runs under the system temp dir), never to notebooks/.
"""

import hashlib
import os
import re
import shutil
import sys
import time
import warnings
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
KERNEL_NAME = "python3"
SMALL_MODE_VARIABLE = "KERAS_RESNET_SMALL"
# The bound for one notebook in small mode on 2 CPU cores; over it is a warning,
# not a failure, so a busy machine does not fail the suite.
SMALL_MODE_BUDGET_SECONDS = 180
CELL_TIMEOUT_SECONDS = 600
COLAB_BADGE_IMAGE = "https://colab.research.google.com/assets/colab-badge.svg"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


def repository_url() -> str:
    """The one place the repository URL is kept: `REPOSITORY_URL` in setup.py."""
    match = re.search(r'^REPOSITORY_URL = "([^"]+)"', (ROOT / "setup.py").read_text(), re.M)
    assert match, "setup.py must define REPOSITORY_URL"
    return match.group(1)


def colab_url(notebook: str) -> str:
    """Colab's address of a notebook on the repository's main branch."""
    github_path = repository_url().removeprefix("https://github.com/")
    return f"https://colab.research.google.com/github/{github_path}/blob/main/notebooks/{notebook}"


def _read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def _code_cells(nb: nbformat.NotebookNode) -> list:
    return [cell for cell in nb.cells if cell.cell_type == "code"]


def _kernel_env() -> dict[str, str]:
    """The kernel's environment: small mode, and this checkout first on the import path."""
    env = dict(os.environ)
    env[SMALL_MODE_VARIABLE] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # ipykernel picks the inline backend (as on Colab) only when none is forced.
    env.pop("MPLBACKEND", None)
    return env


def _execute(nb: nbformat.NotebookNode, cwd: Path) -> None:
    """Runs every cell in a fresh kernel started in `cwd`; raises on the first failing cell."""
    client = NotebookClient(
        nb,
        kernel_name=KERNEL_NAME,
        timeout=CELL_TIMEOUT_SECONDS,
        resources={"metadata": {"path": str(cwd)}},
    )
    client.execute(env=_kernel_env())


def _outputs(nb: nbformat.NotebookNode) -> list:
    return [output for cell in _code_cells(nb) for output in cell.get("outputs", [])]


def _text(outputs: list) -> str:
    return "".join(o.get("text", "") for o in outputs if o.output_type == "stream")


def test_there_are_notebooks():
    assert NOTEBOOKS, f"no notebooks in {NOTEBOOKS_DIR}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_clean(path):
    nb = _read(path)
    nbformat.validate(nb)
    for index, cell in enumerate(_code_cells(nb)):
        assert cell.outputs == [], f"code cell {index} has committed outputs"
        assert cell.execution_count is None, f"code cell {index} has an execution count"
    assert "widgets" not in nb.metadata, "widget state is committed"
    kernelspec = nb.metadata.get("kernelspec", {})
    assert kernelspec.get("name") == KERNEL_NAME, kernelspec
    assert kernelspec.get("language") == "python", kernelspec


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_opens_and_installs_on_colab(path):
    nb = _read(path)
    first = nb.cells[0]
    assert first.cell_type == "markdown"
    assert f"[![Open In Colab]({COLAB_BADGE_IMAGE})]({colab_url(path.name)})" in first.source

    install = _code_cells(nb)[0].source
    # Installs from the repository only on Colab, and does nothing elsewhere.
    assert f'REPOSITORY_URL = "{repository_url()}"' in install
    assert 'if "google.colab" in sys.modules:\n    %pip install' in install
    assert "git+{REPOSITORY_URL}" in install
    assert install.rstrip().endswith('{REPOSITORY_URL}"')  # nothing runs after the if


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_small_mode_is_one_settings_cell(path):
    cells = _code_cells(_read(path))
    readers = [cell for cell in cells if SMALL_MODE_VARIABLE in cell.source]
    assert len(readers) == 1, f"{SMALL_MODE_VARIABLE} must be read in exactly one cell"
    # papermill injects its overrides after the cell tagged `parameters`.
    assert "parameters" in readers[0].metadata.get("tags", []), "tag the settings cell"


def test_repository_url_is_the_same_everywhere():
    """Every GitHub or Colab link in the notebooks and their README uses setup.py's URL."""
    url = repository_url()
    github_path = url.removeprefix("https://github.com/")
    pattern = re.compile(r"(?:github\.com|colab\.research\.google\.com/github)/([\w.-]+/[\w.-]+)")
    files = [*NOTEBOOKS, NOTEBOOKS_DIR / "README.md"]
    for path in files:
        found = set(pattern.findall(path.read_text(encoding="utf-8")))
        assert found <= {github_path}, f"{path.name} links to {found - {github_path}}, not {url}"
    readme = (NOTEBOOKS_DIR / "README.md").read_text(encoding="utf-8")
    top_readme = (NOTEBOOKS_DIR.parent / "README.md").read_text(encoding="utf-8")
    for path in NOTEBOOKS:
        assert colab_url(path.name) in readme, (
            f"notebooks/README.md has no Colab link to {path.name}"
        )
        assert f"`{path.name}`" in top_readme, f"README.md's Notebooks section omits {path.name}"


def test_kernel_is_this_python(tmp_path):
    """The declared kernelspec runs this interpreter and imports this checkout, in small mode."""
    probe = nbformat.v4.new_notebook(
        metadata={"kernelspec": {"name": KERNEL_NAME, "display_name": "Python 3"}}
    )
    probe.cells = [
        nbformat.v4.new_code_cell(
            "import os, sys\n"
            "import matplotlib, keras_resnet\n"
            "print(sys.executable)\n"
            "print(keras_resnet.__file__)\n"
            f"print(os.environ.get({SMALL_MODE_VARIABLE!r}))\n"
            "print(matplotlib.get_backend())\n"
            "print(os.getcwd())"
        )
    ]
    _execute(probe, tmp_path)
    executable, package, small, backend, cwd = _text(_outputs(probe)).split()
    assert Path(executable).resolve() == Path(sys.executable).resolve()
    assert Path(package).resolve() == ROOT / "keras_resnet" / "__init__.py"
    assert small == "1"
    assert "inline" in backend
    assert Path(cwd).resolve() == tmp_path.resolve()


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_in_small_mode(path, tmp_path, record_property):
    committed = hashlib.sha256(path.read_bytes()).hexdigest()
    nb = _read(path)
    executed = tmp_path / path.name
    started = time.perf_counter()
    try:
        _execute(nb, tmp_path)
    finally:
        nbformat.write(nb, executed)  # also when a cell fails: look there for its outputs
        seconds = time.perf_counter() - started
        # Reported at the end of the run by conftest.py (from any xdist worker).
        record_property("notebook_seconds", (path.name, seconds))
    print(f"{path.name}: {seconds:.1f} s in small mode; executed copy: {executed}")

    outputs = _outputs(nb)
    assert any("image/png" in o.get("data", {}) for o in outputs), "no inline matplotlib figure"
    assert not any(WIDGET_MIME in o.get("data", {}) for o in outputs), "a widget was displayed"
    assert "small mode" in _text(outputs), "the notebook should say it runs in small mode"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == committed, "notebook was rewritten"
    # The run directories (ResNet50 checkpoints: ~0.4 GB) are not worth keeping once passed.
    shutil.rmtree(tmp_path / "runs", ignore_errors=True)
    if seconds > SMALL_MODE_BUDGET_SECONDS:
        warnings.warn(
            f"{path.name} took {seconds:.0f} s in small mode, over the "
            f"{SMALL_MODE_BUDGET_SECONDS} s budget",
            stacklevel=1,
        )
