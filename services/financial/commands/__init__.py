"""The financial service's writes: `payments` (the payment side of the order saga: create,
charge through the gateway, refund, cancel; and the ledger rows they book), `suppliers`, and
`accounts` (accounts payable and receivable, the overdue job, and the account receivable that
follows each order's payment).

Each command takes the `UnitOfWork` it writes in (the kit's, committed after the consumer
returns; commands never commit), applies the rules of `domain.py`, writes the rows and events
(outbox, same transaction). An event asking for something impossible raises `DeadLetter`; a
request breaking a rule raises the kit's 409 / 422 problems.
"""
