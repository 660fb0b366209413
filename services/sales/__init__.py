"""The sales service: customers and their addresses (orders follow, ADR 0011)."""
