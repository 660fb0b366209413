"""The financial service's periodic jobs (run by the kit, one replica per period)."""

from __future__ import annotations

from services.financial.commands import accounts, payments
from services.financial.consumers import GATEWAY
from services.platform import PeriodicJob, ServiceContext


async def recover_payments(ctx: ServiceContext) -> None:
    """Charges and refunds left unfinished by a crash (`payments.recover`)."""
    await payments.recover(payments.Charger(ctx, GATEWAY))


# Every 15 s, right from start-up: what a crash left is taken up soon after the restart (and
# once `payments.STALE_AFTER` has passed).
PAYMENT_RECOVERY = PeriodicJob(
    "payment-recovery", every_seconds=15.0, run=recover_payments, run_at_start=True
)


async def mark_overdue_accounts(ctx: ServiceContext) -> None:
    """Pending accounts payable and receivable past their due date become overdue."""
    await accounts.mark_overdue(ctx)


# Due dates are days: every ten minutes marks an account overdue soon after midnight UTC;
# run_at_start: accounts that fell due while the service was down are marked at once.
ACCOUNTS_OVERDUE = PeriodicJob(
    "accounts-overdue", every_seconds=600.0, run=mark_overdue_accounts, run_at_start=True
)
