"""The sales service's writes, one module per aggregate, each on a unit of work."""
