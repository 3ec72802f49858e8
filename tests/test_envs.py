"""The conda env files agree with the pins, and every rule names one (conda channels are unreachable here)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        m = re.match(r"^([A-Za-z0-9_.\-\[\]]+)==([^\s;]+)$", line)
        if m:
            pins[re.sub(r"\[.*\]", "", m[1]).lower().replace("_", "-")] = m[2]
    return pins


REQ = _pins(REPO / "requirements.txt")
LOCK = _pins(REPO / "requirements-lock.txt")
ENV_FILES = sorted((REPO / "envs").glob("*.yaml"))


def test_requirements_agree_with_the_lock():
    for name, version in REQ.items():
        assert LOCK.get(name) == version, f"requirements.txt pins {name}=={version}, lock has {LOCK.get(name)}"


@pytest.mark.parametrize("env", ENV_FILES, ids=lambda p: p.name)
def test_env_file_pins_match_requirements(env):
    spec = yaml.safe_load(env.read_text())
    assert spec["channels"][0] == "conda-forge"
    deps = spec["dependencies"]
    assert any(str(d).startswith("python =3.11") for d in deps if isinstance(d, str))
    pip = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
    checked = 0
    for line in pip:
        m = re.match(r"^([A-Za-z0-9_.\-]+)==(\S+)$", line)
        if not m:
            assert line.startswith("-e .."), f"{env.name}: unpinned pip entry {line!r}"
            continue
        name = m[1].lower().replace("_", "-")
        assert name in REQ, f"{env.name}: {name} is not in requirements.txt"
        assert REQ[name] == m[2], f"{env.name}: {name}=={m[2]} but requirements.txt pins {REQ[name]}"
        checked += 1
    assert checked >= 3


def test_every_rule_names_an_existing_env_and_a_log():
    rules = {}
    for smk in sorted((REPO / "rules").glob("*.smk")):
        text = smk.read_text()
        # A rule defined in a loop (per experiment) is anonymous and takes its name from `name:`.
        for block in re.split(r"\n(?=\s*rule[ :]|checkpoint )", text):
            m = re.match(r"(?:rule|checkpoint) (\w+):|rule:\s*\n\s*name:\s*\n\s*(.+)", block.strip())
            if not m:
                continue
            m = [None, m[1] or m[2]]
            rules[m[1]] = block
            env = re.search(r'conda:\s*\n\s*"\.\./envs/([\w\-]+\.yaml)"', block)
            assert env, f"{smk.name}: rule {m[1]} has no conda: env"
            assert (REPO / "envs" / env[1]).exists(), f"{smk.name}: rule {m[1]}: envs/{env[1]} does not exist"
            assert re.search(r"\n\s*log:\s*\n", block), f"{smk.name}: rule {m[1]} has no log:"
    assert {"ingest", "folds", "extract_features", "train", 'experiment_rule_name("score", _paper, _variant)',
            "table"} <= set(rules)
