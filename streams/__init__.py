"""Support KPI stream processor."""

__version__ = "0.1.0"
