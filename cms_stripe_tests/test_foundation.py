"""Foundation: the package installs, the CLI answers, the Dagster code location loads, and the pure
core never imports Dagster (it must stay unit-testable without it)."""

from __future__ import annotations

import ast
import os
import pathlib
import subprocess
import sys

import sqlalchemy as sa

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _run(args: list[str], env: dict[str, str] | None = None, cwd: pathlib.Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, cwd=cwd, env=env, timeout=300, check=False)


def test_cli_help_lists_commands():
    result = _run([sys.executable, "-m", "cms_stripe", "--help"])
    assert result.returncode == 0, result.stderr
    assert "Usage: cms-stripe" in result.stdout or "Usage: python -m cms_stripe" in result.stdout
    assert "demo-data" in result.stdout


def test_cli_demo_data_writes_a_catalog(tmp_path):
    url = f"sqlite:///{tmp_path / 'demo.sqlite'}"
    result = _run([sys.executable, "-m", "cms_stripe", "demo-data", "--url", url, "--products", "200"])
    assert result.returncode == 0, result.stderr
    assert "wrote 200 products" in result.stdout
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM products").scalar_one() == 200
    engine.dispose()


def test_dagster_definitions_validate(tmp_path):
    # A DAGSTER_HOME of its own: the repo's dagster.yaml is the shared-deployment config (Postgres).
    env = dict(os.environ, DAGSTER_HOME=str(tmp_path))
    dagster = pathlib.Path(sys.executable).with_name("dagster")
    result = _run([str(dagster), "definitions", "validate", "-w", "workspace.yaml"], env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Validation successful" in (result.stdout + result.stderr)


def test_pure_core_does_not_import_dagster():
    offenders = []
    for path in (ROOT / "cms_stripe" / "core").rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0].startswith("dagster")]
    assert offenders == []


def test_pyproject_has_no_dagster_tool_block():
    text = (ROOT / "pyproject.toml").read_text()
    assert "[tool.dagster]" not in text and "[tool.dg]" not in text
