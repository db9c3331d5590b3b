"""A non-editable wheel ships kernels/, policies/ and tools/ only inside the hyclora_hooks namespace."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(ROOT)], check=True, cwd=out)
    (whl,) = out.glob("hyclora_hooks-*.whl")
    return whl


def test_wheel_has_no_top_level_kernels_or_policies(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"hyclora_hooks", next(t for t in tops if t.endswith(".dist-info"))}, tops
    assert "hyclora_hooks/kernels/quant.py" in names
    assert "hyclora_hooks/policies/intra.toml" in names
    assert "hyclora_hooks/tools/cli.py" in names


def test_installed_wheel_imports_from_its_namespace(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True)
    assert not (target / "kernels").exists() and not (target / "policies").exists()
    code = ("import importlib.util, hyclora_hooks as h, hyclora_hooks.kernels.quant as q;"
            "assert q.__file__.startswith(%r), q.__file__;"
            "assert 'intra' in h.preset_names(); h.load_policy('intra');"
            "import hyclora_hooks.tools.cli;"
            "spec = importlib.util.find_spec('kernels');"
            "assert spec is None or not str(spec.origin).startswith(%r), spec") % (str(target), str(target))
    env = {**os.environ, "PYTHONPATH": str(target)}
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path, env=env)
