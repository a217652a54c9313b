import { useLocation, useRoute } from "preact-iso";
import { useEffect, useState } from "preact/hooks";
import { as, reservation } from "../api";
import { SeatMap } from "../components/SeatMap";
import type { Seat } from "../gen/concert/catalog/v1/catalog_pb";
import { useLiveSeats } from "../live-seats";
import { bestAvailable, describeError, formatWhen, formatWon, holdOf, reasonOf, skewOf } from "../logic";
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

  const pick = (seat: Seat, isMine: boolean) => {
    if (!isMine) return hold(seat.seatNumber, seat.grade, false);
    return run(async () => {
      const mine = here.find((h) => h.seatNumber === seat.seatNumber);
      if (!mine) return;
      await reservation.cancelReservation({ reservationId: mine.reservationId }, as(access));
      dispatch({ type: "released", reservationIds: [mine.reservationId] });
    });
  };

  /** Holds `seatNumber` or, with `best`, the best free seat of its grade if it was just taken. */
  const hold = (seatNumber: number, grade: string, best: boolean) =>
    run(async () => {
      try {
        const sentAt = Date.now();
        const r = await reservation.holdSeat({ scheduleId, seatNumber, bestAvailable: best }, as(access, credential));
        const held = r.reservation && holdOf(r.reservation);
        // HoldSeat's answer names no grade (ListReservations does): the map knows it.
        if (r.reservation && held) {
          dispatch({ type: "held", hold: { ...held, grade: held.grade || grade }, skewMs: skewOf(r.reservation, sentAt) });
        }
      } catch (e) {
        // Lost the race: the seat is shown taken at once, whatever the next map says.
        if (e instanceof ConnectError && reasonOf(e) === "SEAT_UNAVAILABLE") {
          map.markTaken(seatNumber);
          if (best) return fail(`Every free ${grade} seat was just taken. Please pick another grade or date.`);
        }
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
      {map.seats.length > 0 && (
        <p class="best" role="group" aria-label="Best available">
          Or let us pick the best free seat:{" "}
          {bestAvailable(map.seats).map((g) => (
            <button
              key={g.grade}
              type="button"
              class="button"
              disabled={busy || g.seatNumber === undefined}
              onClick={() => g.seatNumber !== undefined && hold(g.seatNumber, g.grade, true)}
            >
              Best {g.grade} · {formatWon(g.price)}
            </button>
          ))}
        </p>
      )}
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
