"""Signaling drivers: how peers find each other before they are connected."""

from .base import Driver, MessageHandler
from .memory import MemoryDriver

__all__ = ["Driver", "MemoryDriver", "MessageHandler"]
