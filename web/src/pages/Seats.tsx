import { useLocation, useRoute } from "preact-iso";
import { useEffect, useState } from "preact/hooks";
import { as, reservation } from "../api";
import { SeatMap } from "../components/SeatMap";
import type { Seat } from "../gen/concert/catalog/v1/catalog_pb";
import { useLiveSeats } from "../live-seats";
import { describeError, formatWhen, formatWon, holdOf, reasonOf, skewOf } from "../logic";
import { startOf } from "../schedules";
import { basket, total } from "../session";
import { Heading, useShop } from "../shop";
import { ConnectError } from "@connectrpc/connect";

/** The live seat map of one date and the basket: pick up to the hold limit, release a seat
 * by picking it again, then check out. */
export function Seats() {
  const { params } = useRoute();
  const concertId = params.concertId ?? "";
  const scheduleId = params.scheduleId ?? "";
  const { access, session, dispatch, run, busy, fail } = useShop();
  const { route } = useLocation();
  const admission = session.admission?.concertId === concertId ? session.admission : undefined;
  const credential = admission?.credential || undefined;
  const [startsAt, setStartsAt] = useState<number>();
  const map = useLiveSeats(access, credential, scheduleId, (e) => {
    dispatch({ type: "turnEnded" });
    fail(describeError(e));
  });

  useEffect(() => {
    if (!credential) {
      route(`/concerts/${concertId}/line`, true);
      return;
    }
    startOf(access, credential, concertId, scheduleId)
      .then(setStartsAt)
      .catch(() => undefined);
  }, [access, concertId, credential, route, scheduleId]);

  const holds = basket(session);
  const here = holds.filter((h) => h.scheduleId === scheduleId);
  const mine = new Set(here.map((h) => h.seatNumber));

  const pick = (seat: Seat, isMine: boolean) =>
    run(async () => {
      if (isMine) {
        const hold = here.find((h) => h.seatNumber === seat.seatNumber);
        if (!hold) return;
        await reservation.cancelReservation({ reservationId: hold.reservationId }, as(access));
        dispatch({ type: "released", reservationIds: [hold.reservationId] });
        return;
      }
      try {
        const sentAt = Date.now();
        const r = await reservation.holdSeat({ scheduleId, seatNumber: seat.seatNumber }, as(access, credential));
        const held = r.reservation && holdOf(r.reservation);
        // HoldSeat's answer names no grade (ListReservations does): the map knows it.
        if (r.reservation && held) {
          dispatch({ type: "held", hold: { ...held, grade: held.grade || seat.grade }, skewMs: skewOf(r.reservation, sentAt) });
        }
      } catch (e) {
        // Lost the race: the seat is shown taken at once, whatever the next map says.
        if (e instanceof ConnectError && reasonOf(e) === "SEAT_UNAVAILABLE") map.markTaken(seat.seatNumber);
        throw e;
      }
    });

  return (
    <section>
      <Heading>Choose seats — {startsAt ? formatWhen(startsAt) : (admission?.title ?? "")}</Heading>
      <p class="hint">
        {admission?.title}, {admission?.venue}. Pick up to four seats; pick one of yours again to release it.{" "}
        <span class={map.live ? "live live--on" : "live"}>{map.live ? "Live: seats update as others buy." : "Updating every few seconds."}</span>
      </p>
      {map.seats.length === 0 && <p>Loading the seat map…</p>}
      <SeatMap seats={map.seats} mine={mine} onPick={pick} disabled={busy} />
      <h2>Your seats</h2>
      {holds.length === 0 ? (
        <p>No seats picked yet.</p>
      ) : (
        <>
          <ul class="basket">
            {holds.map((h) => (
              <li key={h.reservationId}>
                Seat {h.seatNumber} · {h.grade} · {formatWon(h.price)}
                {h.scheduleId !== scheduleId && " (another date)"}
              </li>
            ))}
          </ul>
          <p>
            Total <strong>{formatWon(total(holds))}</strong>
          </p>
          <a class="button primary" href="/checkout">
            Check out {holds.length === 1 ? "1 seat" : `${holds.length} seats`}
          </a>
        </>
      )}
    </section>
  );
}
