"""A strict, local emulator of the Stripe v1 products and prices API (see README, "The Stripe emulator")."""

from .config import EmulatorConfig, FaultConfig
from .server import EmulatorServer

__all__ = ["EmulatorConfig", "EmulatorServer", "FaultConfig"]
