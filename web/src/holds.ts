// The server is the authority on holds: one place reads the user's reservations and puts
// the live holds among them in the tab's session (at start, after a refusal, in my tickets).
import { as, reservation } from "./api";
import type { Reservation } from "./gen/concert/reservation/v1/reservation_pb";
import { holdOf } from "./logic";
import type { Action } from "./session";

/** The user's reservations, newest first (ListReservations, one page of 50); the live holds
 * among them replace the tab's. */
export async function syncHolds(access: string, dispatch: (a: Action) => void): Promise<Reservation[]> {
  const r = await reservation.listReservations({ pageSize: 50 }, as(access));
  dispatch({ type: "synced", holds: r.reservations.map(holdOf).filter((h) => h !== undefined) });
  return r.reservations;
}
