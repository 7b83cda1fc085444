"""Pure, synchronous KPI logic: no Faust or Kafka imports."""
