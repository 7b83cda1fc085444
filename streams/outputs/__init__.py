"""Outputs: Prometheus exposition, the KPI topic publisher, pipeline health."""
