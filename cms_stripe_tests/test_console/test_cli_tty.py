"""On a terminal the console draws a live progress bar (rich) instead of the progress lines, and the
bar completes: the CLI runs under a pseudo-terminal and its screen output is read back."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys

import sqlalchemy as sa

from cms_stripe.cms.demo import generate_catalog, write_catalog
from cms_stripe.emulator import EmulatorConfig, EmulatorServer
from cms_stripe_tests.test_cli import ANCHOR, cli_env


def _run_in_pty(args: list[str], env: dict[str, str], cwd) -> tuple[int, str]:
    controller, terminal = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "cms_stripe", *args],
        cwd=cwd,
        env={**env, "TERM": "xterm-256color", "COLUMNS": "120"},
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        close_fds=True,
    )
    os.close(terminal)
    chunks = []
    while True:
        try:
            data = os.read(controller, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(controller)
    return proc.wait(timeout=600), b"".join(chunks).decode("utf-8", "replace")


def test_progress_bar_renders_and_completes_on_a_terminal(tmp_path):
    catalog = generate_catalog(150, seed=3, anchor=ANCHOR, days=3)
    cms_url = f"sqlite:///{tmp_path / 'cms.sqlite'}"
    engine = sa.create_engine(cms_url)
    write_catalog(engine, catalog.products)
    engine.dispose()
    with EmulatorServer(EmulatorConfig()) as emulator:
        env = cli_env(tmp_path, cms_url, emulator.url, MIGRATION_CHECKPOINT_INTERVAL="20")
        code, screen = _run_in_pty(["migrate"], env, tmp_path)
    assert code == 0, screen[-3000:]
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen)
    assert "Progress: " not in plain, "on a terminal the bar replaces the progress lines"
    planned = 150 - len(catalog.invalid)
    assert "Syncing" in plain and "━" in plain
    assert f"{planned}/{planned}" in plain, plain[-2000:]
    assert f"ok {planned} failed 0" in plain
