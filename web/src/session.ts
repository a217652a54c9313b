// What this tab remembers of the buyer's purchase, so that a reload, Back/Forward or a
// duplicated tab resumes where the buyer was: the queue token (and admission pass) of the
// concert being shopped, the live holds with their expiry, the payment's idempotency key,
// the last order. Kept in sessionStorage (this tab only; the server stays the authority: holds
// are re-read from ListReservations when the page starts). A reducer with no I/O: tested in
// session.test.ts.

/** A hold this tab placed or found live on the server. Prices in won. */
export type Hold = {
  reservationId: string;
  concertId: string;
  scheduleId: string;
  seatNumber: number;
  grade: string;
  price: number;
  /** When the hold ends, in ms since the epoch by the server's clock. */
  expiresAt: number;
};

/** The concert being shopped and this tab's place in its waiting room. */
export type Admission = {
  concertId: string;
  title: string;
  venue: string;
  /** The queue token (GetQueueStatus, WatchQueue, LeaveQueue). */
  token: string;
  /** What protected calls send as `x-queue-token` once admitted (the admission pass, or the
   * bare token); empty while waiting. */
  credential: string;
  /** The first place in line seen, for the progress bar. */
  firstPosition: number;
};

/** A paid order, for the confirmation page. */
export type Order = {
  paymentId: string;
  amount: number;
  balanceAfter: number;
  concertTitle: string;
  venue: string;
  startsAt?: number;
  seats: { seatNumber: number; grade: string; price: number }[];
};

export type Session = {
  admission?: Admission;
  holds: Hold[];
  /** The idempotency key of the payment of exactly `ids` (sorted, comma-joined): a retry
   * or a reload pays with the same key, so an order is never paid twice. */
  payKey?: { ids: string; key: string };
  /** The server's clock minus this browser's, in ms (countdowns use the server's). */
  skewMs: number;
  lastOrder?: Order;
};

export type Action =
  | { type: "joined"; admission: Admission }
  | { type: "position"; position: number }
  | { type: "admitted"; credential: string }
  /** The token is spent, expired or left: protected calls need a new turn. */
  | { type: "turnEnded" }
  | { type: "held"; hold: Hold; skewMs: number }
  /** Holds that ended (released, expired, refused): gone from the basket. */
  | { type: "released"; reservationIds: string[] }
  /** The live holds as the server lists them now: they replace the tab's list. */
  | { type: "synced"; holds: Hold[] }
  | { type: "payKey"; ids: string; key: string }
  | { type: "paid"; order: Order; reservationIds: string[] };

export const EMPTY: Session = { holds: [], skewMs: 0 };

export function reduce(state: Session, action: Action): Session {
  switch (action.type) {
    case "joined":
      return { ...state, admission: action.admission };
    case "position": {
      const a = state.admission;
      if (!a || a.firstPosition >= action.position) return state;
      return { ...state, admission: { ...a, firstPosition: action.position } };
    }
    case "admitted":
      return state.admission ? { ...state, admission: { ...state.admission, credential: action.credential } } : state;
    case "turnEnded":
      return { ...state, admission: undefined, payKey: undefined };
    case "held":
      return {
        ...state,
        skewMs: action.skewMs,
        holds: [...state.holds.filter((h) => h.reservationId !== action.hold.reservationId), action.hold],
      };
    case "released": {
      const gone = new Set(action.reservationIds);
      return { ...state, holds: state.holds.filter((h) => !gone.has(h.reservationId)) };
    }
    case "synced":
      return { ...state, holds: action.holds };
    case "payKey":
      return { ...state, payKey: { ids: action.ids, key: action.key } };
    case "paid": {
      const paid = new Set(action.reservationIds);
      // Paying spends the admission: its token buys nothing more.
      return {
        ...state,
        admission: undefined,
        payKey: undefined,
        lastOrder: action.order,
        holds: state.holds.filter((h) => !paid.has(h.reservationId)),
      };
    }
  }
}

/** The basket, in seat order: the holds of the concert being shopped, or every live hold
 * when this tab shops none (a turn that ended still leaves holds to pay or release). */
export function basket(state: Session): Hold[] {
  const concert = state.admission?.concertId;
  const holds = concert ? state.holds.filter((h) => h.concertId === concert) : [...state.holds];
  return holds.sort((a, b) => a.scheduleId.localeCompare(b.scheduleId) || a.seatNumber - b.seatNumber);
}

/** The basket's total, in won. */
export function total(holds: Hold[]): number {
  return holds.reduce((sum, h) => sum + h.price, 0);
}

/** When the first of `holds` ends (server clock, ms), or undefined for none. */
export function firstExpiry(holds: Hold[]): number | undefined {
  return holds.length ? Math.min(...holds.map((h) => h.expiresAt)) : undefined;
}

/** The holds of `holds` that have ended by `serverNow`. */
export function expired(holds: Hold[], serverNow: number): Hold[] {
  return holds.filter((h) => h.expiresAt <= serverNow);
}

/** The idempotency key for paying `holds`: the kept one when it is for the same seats, else
 * a new one from `newKey` (and whether it is new, to keep it). */
export function payKeyFor(state: Session, holds: Hold[], newKey: () => string): { ids: string; key: string; fresh: boolean } {
  const ids = holds.map((h) => h.reservationId).sort().join(",");
  if (state.payKey?.ids === ids) return { ...state.payKey, fresh: false };
  return { ids, key: newKey(), fresh: true };
}

const KEY = "concert.session.v1";

/** The tab's session, or an empty one when none is kept or it cannot be read. */
export function load(storage: Pick<Storage, "getItem">): Session {
  try {
    const raw = storage.getItem(KEY);
    if (!raw) return EMPTY;
    const parsed = JSON.parse(raw) as Partial<Session>;
    return { ...EMPTY, ...parsed, holds: Array.isArray(parsed.holds) ? parsed.holds : [] };
  } catch {
    return EMPTY;
  }
}

export function save(storage: Pick<Storage, "setItem">, state: Session): void {
  storage.setItem(KEY, JSON.stringify(state));
}

/** Forgets the session (signing out). */
export function clear(storage: Pick<Storage, "removeItem">): void {
  storage.removeItem(KEY);
}
