"""The financial service's periodic jobs (run by the kit, one replica per period)."""

from __future__ import annotations

from services.financial.commands import payments
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
