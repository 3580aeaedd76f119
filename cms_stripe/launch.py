"""Runs of `cms-stripe` carry the code location's origin, as runs launched from the UI do.

`job.execute_in_process` makes runs without a code-location origin: the UI lists them under Runs but
not on the job's page (which filters on the job name and the repository label tag) nor on the
Overview timeline, and "Re-execute" warns that the job may be a different version. Here the CLI
loads the code location that `workspace.yaml` defines in its own process, creates the run from it
the way the webserver's launch does (job and execution-plan snapshots, the remote job origin, the
Python origin) and then executes that run in this process, in-process executor, so the console
still hears the run and exit codes are unchanged.
"""

from __future__ import annotations

import os
import pathlib
import socket
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

import dagster as dg
from dagster._core.definitions.selector import JobSubsetSelector
from dagster._core.execution.api import execute_run
from dagster._core.execution.plan.resume_retry import ReexecutionStrategy
from dagster._core.remote_origin import (
    CodeLocationOrigin,
    InProcessCodeLocationOrigin,
    ManagedGrpcPythonEnvCodeLocationOrigin,
)
from dagster._core.remote_representation.code_location import CodeLocation
from dagster._core.remote_representation.external import RemoteJob
from dagster._core.remote_representation.handle import RepositoryHandle
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._core.workspace.load import location_origin_from_module_name, location_origins_from_yaml_paths
from dagster._record import copy

from cms_stripe.constants import HOST_TAG, PID_TAG
from cms_stripe.loggers import with_log_file
from cms_stripe.reporting import listen

DEFS_MODULE = "cms_stripe.definitions"
# The project root: workspace.yaml's `working_directory: .` is this folder.
PROJECT_ROOT = pathlib.Path(__file__).resolve().parents[1]
WORKSPACE_FILE = PROJECT_ROOT / "workspace.yaml"
# Runs in-process (one process, as execute_in_process did): the console listens to the run here.
IN_PROCESS_EXECUTION: dict[str, Any] = {"execution": {"config": {"in_process": {}}}}


def workspace_origin() -> CodeLocationOrigin:
    """The origin workspace.yaml gives the code location (its `python_module` entry for
    cms_stripe.definitions): what `dagster dev -w workspace.yaml` and `dagster job launch` stamp on
    their runs. An installed package has no workspace.yaml beside it: the origin that same entry
    gives then (location named after the module, as the entry names none)."""
    if WORKSPACE_FILE.is_file():
        for origin in location_origins_from_yaml_paths([str(WORKSPACE_FILE)]):
            if (
                isinstance(origin, ManagedGrpcPythonEnvCodeLocationOrigin)
                and origin.loadable_target_origin.module_name == DEFS_MODULE
            ):
                return origin
    return location_origin_from_module_name(DEFS_MODULE, None, ".", None)


@dataclass
class Location:
    """The workspace's code location, loaded in this process."""

    location: CodeLocation
    origin: CodeLocationOrigin
    repository_name: str

    def remote_job(self, job_name: str, asset_selection: Sequence[dg.AssetKey] | None = None) -> RemoteJob:
        """The job as this process loaded it, but addressed by the workspace's origin, not the
        in-process loader's: runs made from it (here, or by Dagster's own re-execution) name the code
        location the UI and the daemon know (same location and repository names, same label tag)."""
        loaded = self.location.get_job(
            JobSubsetSelector(
                location_name=self.location.name,
                repository_name=self.repository_name,
                job_name=job_name,
                op_selection=None,
                asset_selection=asset_selection or None,
            )
        )
        handle: RepositoryHandle = copy(loaded.repository_handle, code_location_origin=self.origin)
        return RemoteJob(loaded.job_data_snap, handle)

    @property
    def asset_graph(self) -> Any:
        """What `instance.create_reexecuted_run` reads from the webserver's request context."""
        return self.location.get_repository(self.repository_name).asset_graph


@contextmanager
def workspace_location(instance: dg.DagsterInstance) -> Iterator[Location]:
    origin = workspace_origin()
    in_process = InProcessCodeLocationOrigin(
        LoadableTargetOrigin(
            executable_path=sys.executable, module_name=DEFS_MODULE, working_directory=str(PROJECT_ROOT)
        ),
        location_name=origin.location_name,
    )
    with in_process.create_location(instance) as location:
        (repository_name,) = location.get_repositories()
        yield Location(location, origin, repository_name)


def _create_run(
    instance: dg.DagsterInstance,
    where: Location,
    remote_job: RemoteJob,
    run_config: Mapping[str, Any],
    tags: Mapping[str, str],
) -> dg.DagsterRun:
    """What the webserver's launch (and `dagster job launch`) records: the job snapshot of the code
    location (and its parent's for a subset), the execution plan, both origins."""
    plan = where.location.get_execution_plan(
        remote_job, run_config, step_keys_to_execute=None, known_state=None, instance=instance
    )
    return instance.create_run(
        job_name=remote_job.name,
        run_id=None,
        run_config=run_config,
        resolved_op_selection=None,
        step_keys_to_execute=plan.execution_plan_snapshot.step_keys_to_execute,
        op_selection=None,
        status=dg.DagsterRunStatus.NOT_STARTED,
        root_run_id=None,
        parent_run_id=None,
        tags={**remote_job.tags, **tags},
        job_snapshot=remote_job.job_snapshot,
        execution_plan_snapshot=plan.execution_plan_snapshot,
        parent_job_snapshot=remote_job.parent_job_snapshot,
        remote_job_origin=remote_job.get_remote_origin(),
        job_code_origin=remote_job.get_python_origin(),
        asset_selection=remote_job.asset_selection,
        asset_check_selection=remote_job.asset_check_selection,
        asset_graph=where.asset_graph,
    )


class StripeSlotBusy(Exception):
    """Another run that is still going holds a pool slot (the Stripe writer's): starting now would
    either wait for it indefinitely or break the one-writer rule."""


def _this_process() -> dict[str, str]:
    return {HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid())}


def _process_gone(run: dg.DagsterRun) -> bool:
    """True only when the run names a process of this host that no longer exists."""
    pid = run.tags.get(PID_TAG)
    if run.tags.get(HOST_TAG) != socket.gethostname() or not (pid and pid.isdigit()):
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # someone else's live process
        return False
    return False


def release_dead_runs_slots(instance: dg.DagsterInstance) -> None:
    """Free the pool slots of runs that can no longer release them, or refuse to start.

    A step releases its pool slot when it ends; a killed process never does, and with no daemon behind
    the CLI (whose run monitoring frees slots of ended runs in a deployment) every later Stripe step
    would wait for that slot forever. Slots of a finished run are freed; a run still STARTED whose
    process on this host is gone is first recorded as failed (it can be resumed); a run still going
    elsewhere (the UI, the daemon, another terminal) is the one Stripe writer: `StripeSlotBusy`."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return
    busy = []
    for run_id in sorted(storage.get_concurrency_run_ids()):
        holder = instance.get_run_by_id(run_id)
        if holder is not None and not holder.is_finished and _process_gone(holder):
            instance.report_run_failed(
                holder, f"its process (pid {holder.tags[PID_TAG]}) ended without finishing: killed or crashed"
            )
            holder = instance.get_run_by_id(run_id)
        if holder is None or holder.is_finished:
            storage.free_concurrency_slots_for_run(run_id)
        else:
            busy.append(holder)
    if busy:
        names = ", ".join(f"{r.run_id} ({r.job_name}, {r.status.value})" for r in busy)
        raise StripeSlotBusy(
            f"run {names} holds the Stripe writer's slot (one run writes to Stripe at a time): wait for it to "
            "finish, or, if its process is gone, mark it failed in the UI (Runs → Terminate) and start again"
        )


def _execute(instance: dg.DagsterInstance, where: Location, run: dg.DagsterRun) -> Any:
    recon = where.location.get_reconstructable_job(where.repository_name, run.job_name)  # type: ignore[attr-defined]
    # The run report (the sync step's, then the CLI's) takes this run's records as they are stored
    # instead of reading thousands of them back from the event log.
    listen(instance, run)
    return execute_run(recon, run, instance, raise_on_error=False)


def launch(
    instance: dg.DagsterInstance,
    job_name: str,
    *,
    run_config: Mapping[str, Any],
    tags: Mapping[str, str],
    asset_selection: Sequence[dg.AssetKey] | None = None,
) -> Any:
    """Create the run against the workspace's code location and execute it here; the result is
    Dagster's `JobExecutionResult` (as `execute_in_process` gave one)."""
    release_dead_runs_slots(instance)
    with workspace_location(instance) as where:
        remote_job = where.remote_job(job_name, asset_selection)
        run_config = {**with_log_file(run_config), **IN_PROCESS_EXECUTION}
        run = _create_run(instance, where, remote_job, run_config, {**tags, **_this_process()})
        return _execute(instance, where, run)


def resume_from_failure(
    instance: dg.DagsterInstance, parent: dg.DagsterRun, *, run_config: Mapping[str, Any], tags: Mapping[str, str]
) -> Any:
    """Re-execute `parent` from its failure by Dagster's own path, the one the UI's "Re-execute from
    failure" takes: the steps that did not succeed, with the outputs of those that did; the parent's
    asset selection and all its tags (its partition or partition range, our `cms_stripe/*` tags,
    not the retry bookkeeping), then `tags`; parent, root and resume tags set by Dagster."""
    release_dead_runs_slots(instance)
    with workspace_location(instance) as where:
        remote_job = where.remote_job(parent.job_name, sorted(parent.asset_selection or ()) or None)
        run = instance.create_reexecuted_run(
            # The webserver passes its request context; Dagster reads only its asset graph.
            request_context=cast(Any, where),
            parent_run=parent,
            code_location=where.location,
            remote_job=remote_job,
            strategy=ReexecutionStrategy.FROM_FAILURE,
            extra_tags={**tags, **_this_process()},
            run_config={**with_log_file(run_config), **IN_PROCESS_EXECUTION},
            use_parent_run_tags=True,
        )
        return _execute(instance, where, run)
