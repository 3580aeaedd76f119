"""Runs started by `cms-stripe` are runs of the workspace's code location (issue 13): the UI's job page
lists them (its query filters on the job name and the repository label tag), the Overview timeline
groups them under their code location, and "Re-execute" finds the job at the same snapshot (no
"may be a different version" warning). Before, `execute_in_process` runs carried no origin at all.

The UI's side is played by Dagster's GraphQL schema over a workspace loaded from workspace.yaml, in
the environment the CLI ran with (the job snapshot depends on the settings the definitions read)."""

from __future__ import annotations

import os
import pathlib
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load import location_origins_from_yaml_paths
from dagster._core.workspace.load_target import WorkspaceFileTarget
from dagster_graphql.test.utils import execute_dagster_graphql

from cms_stripe.cms.demo import write_catalog
from cms_stripe.emulator import EmulatorConfig, EmulatorServer
from cms_stripe_tests.test_cli import KEY, ROOT, cli_env, run_cli, valid_live_catalog

# The UI's repository address tag: `${repositoryName}@${locationName}` of the workspace's only code
# location (workspace.yaml's python_module entry names no location, so it is named after the module).
LOCATION = "cms_stripe.definitions"
REPOSITORY = "__repository__"
REPOSITORY_LABEL = f"{REPOSITORY}@{LOCATION}"

JOB_RUNS = """
query JobRuns($filter: RunsFilter!) {
  pipelineRunsOrError(filter: $filter) {
    __typename
    ... on Runs {
      results {
        runId
        status
        pipelineName
        pipelineSnapshotId
        parentPipelineSnapshotId
        repositoryOrigin { repositoryLocationName repositoryName }
      }
    }
  }
}
"""

JOB_SNAPSHOT = """
query Job($selector: PipelineSelector!) {
  pipelineOrError(params: $selector) {
    __typename
    ... on Pipeline { pipelineSnapshotId }
  }
}
"""


@pytest.fixture()
def cli_environment(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    products = valid_live_catalog(30, seed=3)[:12]
    cms_url = f"sqlite:///{tmp_path / 'cms.sqlite'}"
    engine = sa.create_engine(cms_url)
    write_catalog(engine, products)
    engine.dispose()
    with EmulatorServer(EmulatorConfig()) as emulator:
        env = cli_env(tmp_path, cms_url, emulator.url)
        for key in list(os.environ):
            if key.startswith(("MIGRATION_", "STRIPE_", "SUPABASE_", "CMS_")):
                monkeypatch.delenv(key)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        yield env


def _graphql(context: Any, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    result = execute_dagster_graphql(context, query, variables)
    assert not result.errors, result.errors
    return dict(result.data)


def test_cli_runs_are_listed_on_their_job_page_at_the_current_snapshot(cli_environment):
    env = cli_environment
    dry = run_cli(["dry-run"], env)
    assert dry.returncode == 0, dry.stdout[-3000:] + dry.stderr[-3000:]
    migrate = run_cli(["migrate"], env)
    assert migrate.returncode == 0, migrate.stdout[-3000:] + migrate.stderr[-3000:]

    workspace_yaml = str(ROOT / "workspace.yaml")
    (workspace_origin,) = location_origins_from_yaml_paths([workspace_yaml])
    with (
        dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance,
        WorkspaceProcessContext(instance, WorkspaceFileTarget(paths=[workspace_yaml])) as workspace,
    ):
        context = workspace.create_request_context()
        assert context.get_code_location_error(LOCATION) is None
        current = _graphql(
            context,
            JOB_SNAPSHOT,
            {
                "selector": {
                    "repositoryLocationName": LOCATION,
                    "repositoryName": REPOSITORY,
                    "pipelineName": "cms_stripe_sync",
                }
            },
        )["pipelineOrError"]
        assert current["__typename"] == "Pipeline"

        # The job page's query: the job's name and the repository label tag.
        listed = _graphql(
            context,
            JOB_RUNS,
            {
                "filter": {
                    "pipelineName": "cms_stripe_sync",
                    "tags": [{"key": ".dagster/repository", "value": REPOSITORY_LABEL}],
                }
            },
        )["pipelineRunsOrError"]
        assert listed["__typename"] == "Runs"
        runs = listed["results"]
        all_runs = instance.get_runs(dg.RunsFilter(job_name="cms_stripe_sync"))
        assert len(all_runs) == 2 and {r["runId"] for r in runs} == {r.run_id for r in all_runs}

        for run in runs:
            assert run["status"] == "SUCCESS"
            assert run["repositoryOrigin"] == {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY}
            # What the UI compares before re-executing: the run's (parent) snapshot and the job's now.
            assert (run["parentPipelineSnapshotId"] or run["pipelineSnapshotId"]) == current["pipelineSnapshotId"]
        subset = {r["runId"] for r in runs if r["parentPipelineSnapshotId"]}
        assert len(subset) == 1, "the dry run materializes an asset subset, the migrate the whole job"

        for record in all_runs:
            # The code location as workspace.yaml defines it, as the webserver stamps its runs.
            assert record.remote_job_origin is not None
            assert record.remote_job_origin.repository_origin.code_location_origin == workspace_origin
            assert record.remote_job_origin.job_name == "cms_stripe_sync"
            assert record.job_code_origin is not None
            pointer = record.job_code_origin.repository_origin.code_pointer
            assert (pointer.module, pointer.fn_name) == ("cms_stripe.definitions", "defs")  # type: ignore[attr-defined]
            assert record.tags["cms_stripe/cli"] == "true"

    # The CLI's runs also leave their Dagster events in the log file, once each (issue 13).
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    log = (pathlib.Path(env["MIGRATION_LOGS_DIR"]) / f"migration-{day}.log").read_text()
    assert KEY not in log
    for record in all_runs:
        mine = [line for line in log.splitlines() if f" run={record.run_id[:8]} dagster " in line]
        assert len([line for line in mine if " RUN_START -: " in line]) == 1
        assert len([line for line in mine if " RUN_SUCCESS -: " in line]) == 1
        assert len([line for line in mine if " STEP_SUCCESS stripe_products: " in line]) == 1
