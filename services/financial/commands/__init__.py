"""The financial service's writes: `payments` (the payment side of the order saga: create,
charge through the gateway, refund, cancel; and the ledger rows they book).

Each command takes the `UnitOfWork` it writes in (the kit's, committed after the consumer
returns; commands never commit), applies the rules of `domain.py`, writes the rows and events
(outbox, same transaction). An event asking for something impossible raises `DeadLetter`.
"""
