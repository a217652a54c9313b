import { useLocation } from "preact-iso";
import { useCallback, useEffect, useState } from "preact/hooks";
import { as, reservation } from "../api";
import { type Payment, PaymentStatus, type Reservation, ReservationStatus } from "../gen/concert/reservation/v1/reservation_pb";
import { syncHolds } from "../holds";
import { formatCountdown, formatWhen, formatWon, msOf, reservationWord } from "../logic";
import { Heading, useShop } from "../shop";

const PAYMENT_WORD: Record<PaymentStatus, string> = {
  [PaymentStatus.UNSPECIFIED]: "unknown",
  [PaymentStatus.PENDING]: "being processed",
  [PaymentStatus.PAID]: "paid",
  [PaymentStatus.FAILED]: "failed, nothing charged",
  [PaymentStatus.REFUNDED]: "refunded",
};

/** The buyer's holds, tickets and payments, with what can be done with each: pay or release a
 * live hold, give a ticket back (with a confirmation) while its refund window is open. */
export function MyTickets() {
  const { access, session, dispatch, run, busy, serverNow } = useShop();
  const { route } = useLocation();
  const [mine, setMine] = useState<{ reservations: Reservation[]; payments: Payment[] }>();
  const [confirming, setConfirming] = useState<string>();

  const load = useCallback(async () => {
    const [reservations, p] = await Promise.all([
      syncHolds(access, dispatch),
      reservation.listPayments({ pageSize: 50 }, as(access)),
    ]);
    setMine({ reservations, payments: p.payments });
  }, [access, dispatch]);
  useEffect(() => {
    void run(load);
  }, [load, run]);

  const cancel = (r: Reservation) =>
    run(async () => {
      await reservation.cancelReservation({ reservationId: r.reservationId }, as(access));
      setConfirming(undefined);
      await load();
    });

  if (!mine) {
    return (
      <section>
        <Heading>My tickets</Heading>
        <p>Loading…</p>
      </section>
    );
  }
  const held = mine.reservations.filter(
    (r) => r.status === ReservationStatus.HELD && (msOf(r.expiresAt) ?? 0) > serverNow,
  );
  const tickets = mine.reservations.filter((r) => r.status === ReservationStatus.CONFIRMED);
  const past = mine.reservations.filter((r) => !held.includes(r) && !tickets.includes(r));
  const shopping = session.admission;

  const describe = (r: Reservation) => {
    const starts = msOf(r.startsAt);
    return (
      <>
        <h3>{r.concertTitle || "Concert"}</h3>
        <p>
          {r.venue}
          {starts ? ` · ${formatWhen(starts)}` : ""}
        </p>
        <p>
          Seat {r.seatNumber} · {r.grade} · {formatWon(r.price)} · {reservationWord(r.status)}
          {r.paymentId && (
            <>
              {" "}
              · payment <code>{r.paymentId.slice(0, 8)}</code>
            </>
          )}
        </p>
      </>
    );
  };

  return (
    <section>
      <Heading>My tickets</Heading>

      <h2>Seats on hold</h2>
      {held.length === 0 ? (
        <p>You hold no seats right now.</p>
      ) : (
        <ul class="cards">
          {held.map((r) => (
            <li key={r.reservationId}>
              {describe(r)}
              <p role="timer" aria-live="off">
                Pay within {formatCountdown(msOf(r.expiresAt) ?? 0, serverNow)}
              </p>
              <div class="actions">
                {shopping?.credential && shopping.concertId === r.concertId ? (
                  <button type="button" class="primary" onClick={() => route("/checkout")} disabled={busy}>
                    Pay
                  </button>
                ) : (
                  <a class="button primary" href={`/concerts/${r.concertId}/line`}>
                    Join the waiting room to pay
                  </a>
                )}
                <button type="button" onClick={() => cancel(r)} disabled={busy}>
                  Release seat {r.seatNumber}
                </button>
              </div>
            </li>
          ))}
        </ul>
      )}

      <h2>Tickets</h2>
      {tickets.length === 0 ? (
        <p>You have no tickets yet.</p>
      ) : (
        <ul class="cards">
          {tickets.map((r) => {
            const until = msOf(r.refundableUntil);
            const refundable = until !== undefined && until > serverNow;
            return (
              <li key={r.reservationId}>
                {describe(r)}
                {refundable && until !== undefined && confirming !== r.reservationId && (
                  <p class="actions">
                    <button type="button" onClick={() => setConfirming(r.reservationId)} disabled={busy}>
                      Give back seat {r.seatNumber}
                    </button>{" "}
                    <span class="hint">refundable until {formatWhen(until)}</span>
                  </p>
                )}
                {confirming === r.reservationId && (
                  <div class="confirm" role="group" aria-label={`Give back seat ${r.seatNumber}?`}>
                    <p>
                      Give back seat {r.seatNumber} for a refund of {formatWon(r.price)} to your wallet? Someone else
                      may buy it at once; this cannot be undone.
                    </p>
                    <button type="button" class="danger" onClick={() => cancel(r)} disabled={busy}>
                      Give back and refund {formatWon(r.price)}
                    </button>{" "}
                    <button type="button" onClick={() => setConfirming(undefined)} disabled={busy}>
                      Keep the ticket
                    </button>
                  </div>
                )}
                {!refundable && <p class="hint">This ticket can no longer be given back.</p>}
              </li>
            );
          })}
        </ul>
      )}

      <h2>Payments</h2>
      {mine.payments.length === 0 ? (
        <p>No payments yet.</p>
      ) : (
        <ul class="cards">
          {mine.payments.map((p) => {
            const at = msOf(p.paidAt) ?? msOf(p.createdAt);
            const seats = Math.max(1, p.reservationIds.length);
            return (
              <li key={p.paymentId}>
                {formatWon(p.amount)} · {seats === 1 ? "1 seat" : `${seats} seats`} · {PAYMENT_WORD[p.status] ?? "unknown"}
                {at ? ` · ${formatWhen(at)}` : ""} · <code>{p.paymentId.slice(0, 8)}</code>
              </li>
            );
          })}
        </ul>
      )}

      {past.length > 0 && (
        <>
          <h2>Earlier</h2>
          <ul class="cards">
            {past.map((r) => (
              <li key={r.reservationId}>{describe(r)}</li>
            ))}
          </ul>
        </>
      )}
      <a href="/">Back to the concerts</a>
    </section>
  );
}
