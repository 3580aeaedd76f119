"""The one Definitions object of the code location; modules export plain lists, this file merges."""

from typing import Any

import dagster as dg

from cms_stripe.assets.cms import raw_cms_products
from cms_stripe.assets.common import FRAMES_IO_MANAGER
from cms_stripe.assets.journal import stripe_write_journal
from cms_stripe.assets.reconciliation import catalog_reconciliation_report, reconciliation_report
from cms_stripe.assets.stripe_sync import stripe_products
from cms_stripe.assets.validation import validated_products
from cms_stripe.io_managers import DailyFrameIOManager
from cms_stripe.jobs import all_jobs
from cms_stripe.loggers import all_loggers
from cms_stripe.resources.cms import catalog_resource_from_env
from cms_stripe.resources.settings import SyncSettingsResource
from cms_stripe.resources.stripe import stripe_resource_from_env
from cms_stripe.schedules import all_schedules
from cms_stripe.sensors import all_sensors

all_assets: list[dg.AssetsDefinition | dg.AssetSpec] = [
    raw_cms_products,
    validated_products,
    stripe_products,
    reconciliation_report,
    catalog_reconciliation_report,
    stripe_write_journal,
]


def build_resources() -> dict[str, Any]:
    """Addresses, keys and folders are no config at all: the resources read them from this code
    location's environment when a run starts, so run config (the Launchpad) cannot redirect them.
    The run settings (dry-run, thresholds) are config whose unset fields take the environment when a
    run starts: no environment value is a config default, so the job snapshot does not change with
    the environment that loaded the code (a CLI run and the webserver share it)."""
    return {
        "catalog": catalog_resource_from_env(),
        "stripe": stripe_resource_from_env(),
        "settings": SyncSettingsResource.from_env(),
        FRAMES_IO_MANAGER: DailyFrameIOManager(),
    }


defs = dg.Definitions(
    assets=all_assets,
    jobs=all_jobs,
    schedules=all_schedules,
    sensors=all_sensors,
    resources=build_resources(),
    loggers=all_loggers,
)
