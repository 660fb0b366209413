"""The inventory service's writes, one module per aggregate: `catalogue` (categories and
products), `warehouses`, `stock` (receipts and adjustments, the movement log) and
`reservations` (the order saga's reserve / confirm / release / expire).

Each command takes the `UnitOfWork` it writes in (the kit's, committed after the handler or
consumer returns; commands never commit), the `Caller` when it records who acted, and typed
inputs (the generated request models); it applies the rules of `domain.py`, writes the rows,
movements and events (outbox, same transaction) and returns what its handler answers. HTTP
errors are the kit's `Problem`; an event asking for an illegal transition raises `DeadLetter`.
"""
