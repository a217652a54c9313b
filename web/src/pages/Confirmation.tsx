import { useRoute } from "preact-iso";
import { useEffect, useState } from "preact/hooks";
import { as, reservation } from "../api";
import type { Reservation } from "../gen/concert/reservation/v1/reservation_pb";
import { formatWhen, formatWon, msOf } from "../logic";
import type { Order } from "../session";
import { Heading, useShop } from "../shop";

/** The paid order: from this tab's session, or (another tab, a bookmark) from the server. */
export function Confirmation() {
  const { params } = useRoute();
  const paymentId = params.paymentId ?? "";
  const { access, session, run } = useShop();
  const kept = session.lastOrder?.paymentId === paymentId ? session.lastOrder : undefined;
  const [order, setOrder] = useState<Order | undefined>(kept);

  useEffect(() => {
    if (kept) return;
    void run(async () => {
      const [r, p] = await Promise.all([
        reservation.listReservations({ pageSize: 50 }, as(access)),
        reservation.listPayments({ pageSize: 50 }, as(access)),
      ]);
      const seats: Reservation[] = r.reservations.filter((x) => x.paymentId === paymentId);
      const payment = p.payments.find((x) => x.paymentId === paymentId);
      const first = seats[0];
      if (!payment || !first) return;
      setOrder({
        paymentId,
        amount: Number(payment.amount),
        balanceAfter: Number.NaN,
        concertTitle: first.concertTitle,
        venue: first.venue,
        startsAt: msOf(first.startsAt),
        seats: seats.map((s) => ({ seatNumber: s.seatNumber, grade: s.grade, price: Number(s.price) })),
      });
    });
  }, [access, kept, paymentId, run]);

  if (!order) {
    return (
      <section>
        <Heading>Your order</Heading>
        <p>Looking up this order…</p>
      </section>
    );
  }
  const seats = order.seats.map((s) => `${s.seatNumber} (${s.grade})`).join(", ");
  return (
    <section>
      <Heading>{order.seats.length === 1 ? "You have a ticket!" : `You have ${order.seats.length} tickets!`}</Heading>
      <dl class="receipt">
        <dt>Concert</dt>
        <dd>
          {order.concertTitle}, {order.venue}
        </dd>
        <dt>Date</dt>
        <dd>{order.startsAt ? formatWhen(order.startsAt) : "See My tickets"}</dd>
        <dt>{order.seats.length === 1 ? "Seat" : "Seats"}</dt>
        <dd>{seats}</dd>
        <dt>Paid</dt>
        <dd>{formatWon(order.amount)}</dd>
        {!Number.isNaN(order.balanceAfter) && (
          <>
            <dt>Balance</dt>
            <dd>{formatWon(order.balanceAfter)}</dd>
          </>
        )}
        <dt>Payment</dt>
        <dd>
          <code>{order.paymentId.slice(0, 8)}</code>
        </dd>
      </dl>
      <a class="button" href="/tickets">
        See my tickets
      </a>
    </section>
  );
}
