"""The financial service's writes: `payments` (the payment side of the order saga: create,
charge through the gateway, refund, cancel; and the ledger rows they book), `suppliers`, and
`accounts` (accounts payable and receivable, the overdue job, and the account receivable that
follows each order's payment).

The consumers' and handlers' commands take the `UnitOfWork` they write in (the kit's,
committed after the consumer or handler returns; they never commit), apply the rules of
`domain.py`, write the rows and events (outbox, same transaction). An event asking for
something impossible raises `DeadLetter`; a request breaking a rule, the kit's 409 / 422.
What runs after that commit — the gateway's charge and refund, and the recovery job — holds no
transaction over the gateway call and opens its own short units of work.
"""
