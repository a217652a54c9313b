import { ConnectError } from "@connectrpc/connect";
import { useLocation } from "preact-iso";
import { useEffect, useState } from "preact/hooks";
import { as, reservation, wallet } from "../api";
import { syncHolds } from "../holds";
import { formatWhen, formatWon, isNetworkError, reasonOf } from "../logic";
import { startOf } from "../schedules";
import { basket, payKeyFor, total } from "../session";
import { Heading, useShop } from "../shop";

/** The order summary and its one payment: every held seat of the concert, their total, the
 * wallet's balance (with a top-up when short) and Pay. */
export function Checkout() {
  const { access, session, dispatch, run, busy } = useShop();
  const { route } = useLocation();
  const holds = basket(session);
  const admission = session.admission;
  const credential = admission?.credential || undefined;
  const [balance, setBalance] = useState<bigint>();
  const [startsAt, setStartsAt] = useState<Record<string, number>>({});
  const sum = BigInt(total(holds));
  const shortBy = balance !== undefined && balance < sum ? sum - balance : 0n;
  const scheduleKey = [...new Set(holds.map((h) => h.scheduleId))].join(",");

  useEffect(() => {
    void run(async () => setBalance((await wallet.getBalance({}, as(access))).balance));
  }, [access, run]);
  useEffect(() => {
    if (!credential || !admission) return;
    for (const id of scheduleKey.split(",").filter(Boolean)) {
      startOf(access, credential, admission.concertId, id)
        .then((at) => at !== undefined && setStartsAt((all) => ({ ...all, [id]: at })))
        .catch(() => undefined);
    }
  }, [access, admission, credential, scheduleKey]);

  const topUp = () =>
    run(async () => {
      const r = await wallet.charge({ amount: shortBy, idempotencyKey: crypto.randomUUID() }, as(access));
      setBalance(r.balance);
    });

  const pay = () =>
    run(async () => {
      if (!admission || !credential) return;
      // One key for these seats' payment, kept across retries and reloads: never paid twice.
      const key = payKeyFor(session, holds, () => crypto.randomUUID());
      if (key.fresh) dispatch({ type: "payKey", ids: key.ids, key: key.key });
      const ids = holds.map((h) => h.reservationId);
      for (let attempt = 0; ; attempt++) {
        try {
          const r = await reservation.payReservation({ reservationIds: ids, idempotencyKey: key.key }, as(access, credential));
          const paymentId = r.payment?.paymentId ?? "";
          dispatch({
            type: "paid",
            reservationIds: ids,
            order: {
              paymentId,
              amount: Number(r.payment?.amount ?? 0n),
              balanceAfter: Number(r.balanceAfter),
              concertTitle: admission.title,
              venue: admission.venue,
              startsAt: startsAt[holds[0]?.scheduleId ?? ""],
              seats: holds.map((h) => ({ seatNumber: h.seatNumber, grade: h.grade, price: h.price })),
            },
          });
          route(`/orders/${paymentId}`, true);
          return;
        } catch (e) {
          // A network error may hide a payment that went through: ask again with the same key.
          if (isNetworkError(e) && attempt < 3) continue;
          const reason = e instanceof ConnectError ? reasonOf(e) : undefined;
          // A refused debit ends the payment and releases every seat of the order (the
          // saga's compensation); an expired hold was released by the server too.
          if (reason === "INSUFFICIENT_BALANCE" || reason === "HOLD_EXPIRED" || reason === "RESERVATION_NOT_HELD") {
            // The server's live holds now: the refusal may have released some.
            await syncHolds(access, dispatch).catch(() => undefined);
            setBalance((await wallet.getBalance({}, as(access))).balance);
          }
          throw e;
        }
      }
    });

  if (holds.length === 0) {
    return (
      <section>
        <Heading>Check out</Heading>
        <p>You have no seats on hold.</p>
        <a href={admission?.credential ? `/concerts/${admission.concertId}/dates` : "/"}>Choose seats</a>
      </section>
    );
  }
  return (
    <section>
      <Heading>Check out</Heading>
      <p>
        {admission?.title}, {admission?.venue}
      </p>
      <table class="summary">
        <caption>Your order</caption>
        <thead>
          <tr>
            <th scope="col">Date</th>
            <th scope="col">Seat</th>
            <th scope="col">Grade</th>
            <th scope="col" class="num">
              Price
            </th>
          </tr>
        </thead>
        <tbody>
          {holds.map((h) => (
            <tr key={h.reservationId}>
              <td>{startsAt[h.scheduleId] ? formatWhen(startsAt[h.scheduleId]) : "…"}</td>
              <td>{h.seatNumber}</td>
              <td>{h.grade}</td>
              <td class="num">{formatWon(h.price)}</td>
            </tr>
          ))}
        </tbody>
        <tfoot>
          <tr>
            <th scope="row" colSpan={3}>
              Total
            </th>
            <td class="num">
              <strong>{formatWon(sum)}</strong>
            </td>
          </tr>
        </tfoot>
      </table>
      <p>Your balance {balance === undefined ? "…" : formatWon(balance)}</p>
      {shortBy > 0n && (
        <div class="topup">
          <p>
            Your wallet is short by {formatWon(shortBy)}: top it up to pay. Paying a refused amount would release the
            seats.
          </p>
          <button type="button" onClick={topUp} disabled={busy}>
            Top up {formatWon(shortBy)}
          </button>
        </div>
      )}
      {credential ? (
        <button type="button" class="primary" onClick={pay} disabled={busy || balance === undefined || shortBy > 0n}>
          Pay {formatWon(sum)}
        </button>
      ) : (
        <p>
          Your turn in the waiting room has ended, so these seats cannot be paid in this tab.{" "}
          <a href={`/concerts/${holds[0]?.concertId ?? ""}/line`}>Join the waiting room again</a> to pay, or release them
          from <a href="/tickets">My tickets</a>.
        </p>
      )}
    </section>
  );
}
