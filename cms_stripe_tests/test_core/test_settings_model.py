"""One settings model: every setting read from the environment in core/settings.py, parsed the same
way (blank is unset, errors name the variable), and no other module reads the environment."""

from __future__ import annotations

import ast
import pathlib
from datetime import date

import pytest

import cms_stripe
from cms_stripe.core.settings import Settings, SettingsError

PACKAGE = pathlib.Path(cms_stripe.__file__).parent


def test_orchestration_and_cms_defaults() -> None:
    s = Settings.from_env({})
    assert (s.partition_start, s.automation, s.sync_cron, s.sensor_lookback_s) == (
        date(2025, 1, 1),
        False,
        "*/30 * * * *",
        120,
    )
    assert (s.cms_page_size, s.cms_write_batch_size, s.cms_backup_dir) == (1000, 500, ".cms_stripe/backups")
    assert (s.cms_table, s.cms_mapping_file, s.frames_dir, s.stripe_tax_behavior) == (None, None, None, None)


def test_values_are_trimmed_and_typed() -> None:
    s = Settings.from_env(
        {
            "MIGRATION_PARTITION_START": " 2024-03-01 ",
            "CMS_STRIPE_AUTOMATION": "On",
            "CMS_STRIPE_SYNC_CRON": "*/10 * * * *\n",
            "CMS_STRIPE_SENSOR_LOOKBACK_S": "0",
            "CMS_PAGE_SIZE": "250",
            "CMS_TABLE": " items ",
            "CMS_STRIPE_FRAMES_DIR": "   ",
            "STRIPE_TAX_BEHAVIOR": "exclusive",
        }
    )
    assert (s.partition_start, s.automation, s.sync_cron, s.sensor_lookback_s) == (
        date(2024, 3, 1),
        True,
        "*/10 * * * *",
        0,
    )
    assert (s.cms_page_size, s.cms_table, s.frames_dir, s.stripe_tax_behavior) == (250, "items", None, "exclusive")


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("MIGRATION_PARTITION_START", "first of may"),
        ("CMS_STRIPE_SENSOR_LOOKBACK_S", "-1"),
        ("CMS_STRIPE_SENSOR_LOOKBACK_S", "2m"),
        ("CMS_PAGE_SIZE", "0"),
        ("CMS_WRITE_BATCH_SIZE", "many"),
        ("CMS_STRIPE_AUTOMATION", "sometimes"),
    ],
)
def test_a_bad_value_names_its_variable(name: str, raw: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: raw})


def _environment_reads(path: pathlib.Path) -> list[int]:
    """Lines of `path` that touch os.environ or call os.getenv."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text())):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "os"
            and node.attr in ("environ", "getenv")
        ):
            lines.append(node.lineno)
    return lines


def test_only_the_settings_module_and_the_command_lines_read_the_environment() -> None:
    readers = {str(path.relative_to(PACKAGE)) for path in PACKAGE.rglob("*.py") if _environment_reads(path)}
    # The CLI loads .env, sets DAGSTER_HOME and hands its flags to the in-process run through the
    # environment the settings are read from; the emulator has its own command line; the embedded
    # instance's storage sets a variable of Dagster's own (its event batching), which no setting of ours is.
    assert readers <= {"core/settings.py", "cli.py", "emulator/__main__.py", "instance_storage.py"}
    assert "core/settings.py" in readers
