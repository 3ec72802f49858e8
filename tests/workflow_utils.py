"""Run the real Snakefile in a scratch working directory (used by the workflow tests)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LINKED = ("Snakefile", "rules", "workflow", "envs", "config", "profiles")


def make_workdir(tmp_path: Path) -> Path:
    wd = tmp_path / "wd"
    wd.mkdir()
    for name in LINKED:
        if (REPO / name).exists():
            (wd / name).symlink_to(REPO / name)
    return wd


def snakemake_bin() -> str:
    return str(Path(sys.executable).parent / "snakemake")


def run_snakemake(wd: Path, *args: str, check: bool = True, timeout: int = 1800) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONHASHSEED": "0"}
    r = subprocess.run([snakemake_bin(), *args], cwd=wd, capture_output=True, text=True, env=env, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed ({r.returncode}):\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}")
    return r
