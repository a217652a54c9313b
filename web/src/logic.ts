// View logic with no I/O: what the page shows for a seat, a countdown, a place in line and a
// refusal. Unit-tested in logic.test.ts.
import { Code, ConnectError } from "@connectrpc/connect";
import { type Timestamp, timestampMs } from "@bufbuild/protobuf/wkt";
import { type Seat, SeatStatus } from "./gen/concert/catalog/v1/catalog_pb";
import { type Reservation, ReservationStatus } from "./gen/concert/reservation/v1/reservation_pb";
import type { Hold } from "./session";
import { ErrorInfoSchema, RetryInfoSchema } from "./gen/google/rpc/error_details_pb";

/** Amounts are whole won (KRW has no minor unit). */
export function formatWon(amount: bigint | number): string {
  return `${BigInt(amount).toLocaleString("en-US")} won`;
}

/** m:ss until `deadline` (ms since the epoch), never negative. */
export function formatCountdown(deadline: number, now: number): string {
  const left = Math.max(0, Math.ceil((deadline - now) / 1000));
  return `${Math.floor(left / 60)}:${String(left % 60).padStart(2, "0")}`;
}

/** Seconds left until `deadline`, at least 0. */
export function secondsLeft(deadline: number, now: number): number {
  return Math.max(0, Math.ceil((deadline - now) / 1000));
}

export type SeatView = {
  number: number;
  /** CSS classes: status first (colour), grade second (a pattern, so colour is not the only signal). */
  className: string;
  /** What a screen reader says, and the tooltip. */
  label: string;
  /** Only available seats can be chosen. */
  selectable: boolean;
  /** A short mark drawn in the seat besides its colour. */
  mark: string;
};

const STATUS_WORD: Record<SeatStatus, string> = {
  [SeatStatus.UNSPECIFIED]: "unknown",
  [SeatStatus.AVAILABLE]: "available",
  [SeatStatus.HELD]: "on hold",
  [SeatStatus.SOLD]: "sold",
};

/** How one seat of the map is drawn and announced; `mine` marks a seat this user holds
 * (selecting it releases it). */
export function seatView(seat: Seat, mine: boolean): SeatView {
  const status = mine ? "mine" : STATUS_WORD[seat.status] ?? "unknown";
  const word = mine ? "held by you (select to release)" : STATUS_WORD[seat.status] ?? "unknown";
  return {
    number: seat.seatNumber,
    className: `seat seat--${status.replace(" ", "-")} grade--${seat.grade.toLowerCase()}`,
    label: `Seat ${seat.seatNumber}, ${seat.grade}, ${formatWon(seat.price)}, ${word}`,
    selectable: mine || seat.status === SeatStatus.AVAILABLE,
    mark: mine ? "★" : seat.status === SeatStatus.SOLD ? "✕" : seat.status === SeatStatus.HELD ? "…" : "",
  };
}

const RESERVATION_WORD: Record<ReservationStatus, string> = {
  [ReservationStatus.UNSPECIFIED]: "unknown",
  [ReservationStatus.HELD]: "held",
  [ReservationStatus.CONFIRMED]: "confirmed",
  [ReservationStatus.CANCELLED]: "cancelled",
  [ReservationStatus.EXPIRED]: "expired",
  [ReservationStatus.REFUNDED]: "given back, refunded",
};

/** A reservation's state in words ("my tickets"). */
export function reservationWord(status: ReservationStatus): string {
  return RESERVATION_WORD[status] ?? "unknown";
}

/** The grades of a map with their prices, for the legend, cheapest last. */
export function legend(seats: Seat[]): { grade: string; price: bigint }[] {
  const byGrade = new Map<string, bigint>();
  for (const s of seats) byGrade.set(s.grade, s.price);
  return [...byGrade].map(([grade, price]) => ({ grade, price })).sort((a, b) => (a.price < b.price ? 1 : -1));
}

/** Per grade of the map (dearest first), the seat a "best available" hold names: the
 * front-most seat of the grade the map shows free, or none when it shows none free. The
 * server holds that seat or, if someone was quicker, the best free one of its grade and
 * price (`HoldSeatRequest.bestAvailable`). */
export function bestAvailable(seats: Seat[]): { grade: string; price: bigint; seatNumber?: number }[] {
  return legend(seats).map(({ grade, price }) => {
    const free = seats
      .filter((s) => s.grade === grade && s.price === price && s.status === SeatStatus.AVAILABLE)
      .map((s) => s.seatNumber);
    return { grade, price, seatNumber: free.length ? Math.min(...free) : undefined };
  });
}

/** The next seat in `direction` (arrow keys on the 10-wide map), staying on the map. */
export function moveFocus(seatNumber: number, key: string, seats = 50, perRow = 10): number {
  const step: Record<string, number> = { ArrowLeft: -1, ArrowRight: 1, ArrowUp: -perRow, ArrowDown: perRow };
  const next = seatNumber + (step[key] ?? 0);
  return next >= 1 && next <= seats ? next : seatNumber;
}

/** Shown in the waiting room once the queue says every seat is sold (`soldOut`). */
export const SOLD_OUT_TEXT =
  "Every seat is sold. If a ticket comes back you will still get your turn here, but it is unlikely: you may leave.";

/** The place in line in words. */
export function lineText(position: bigint, waiting: bigint, etaSeconds: bigint | undefined, preQueue: boolean): string {
  if (preQueue) return "You are in the pre-queue: places are drawn at random when the sale opens.";
  const eta =
    etaSeconds === undefined
      ? ""
      : etaSeconds < 60n
        ? " — less than a minute to go"
        : ` — about ${(etaSeconds + 59n) / 60n} min to go`;
  return `You are number ${position} of ${waiting} waiting${eta}.`;
}

/** The `reason` of a refusal (google.rpc.ErrorInfo), if it carries one. */
export function reasonOf(err: ConnectError): string | undefined {
  return err.findDetails(ErrorInfoSchema)[0]?.reason;
}

/** What went wrong, in words a person understands, and what to do; never a raw code. */
export function describeError(err: unknown): string {
  const e = ConnectError.from(err);
  switch (reasonOf(e)) {
    case "SEAT_UNAVAILABLE":
      return "Someone else just took this seat. Please pick another one.";
    case "HOLD_EXPIRED":
    case "RESERVATION_NOT_HELD":
      return "Your hold on this seat has expired. Please choose a seat again.";
    case "INSUFFICIENT_BALANCE":
      return "Your wallet balance was too low, so the seat was released. Top up, then choose a seat again.";
    case "HOLD_LIMIT":
      return "You already hold as many seats as one person may. Check out, or release one first.";
    case "TOKEN_EXPIRED":
    case "TOKEN_UNKNOWN":
    case "TOKEN_USED":
      return "Your turn has ended. Please join the waiting room again.";
    case "TOKEN_WAITING":
      return "It is not your turn yet. Please keep waiting in line.";
    case "ADMISSION_IN_USE":
      return "A payment for other seats is already under way with this turn.";
    case "REFUND_WINDOW_CLOSED":
      return "This ticket can no longer be given back: the show is too close.";
    case "NOT_OWNER":
      return "This ticket is not yours.";
    case "PAYMENT_IN_PROGRESS":
      return "Your payment is still being processed. Please wait a moment.";
    case "SCHEDULE_STARTED":
      return "This date has already started. Please pick another date.";
    case "RATE_LIMITED":
    case "OVERLOADED":
      return "It is very busy right now. Please try again in a moment.";
    case "BALANCE_LIMIT":
      return "That top-up would take your balance over the limit.";
    case "ACCESS_TOKEN_EXPIRED":
      return "Your sign-in has expired. Please sign in again.";
  }
  switch (e.code) {
    case Code.Unauthenticated:
      return "Please sign in again.";
    case Code.Unavailable:
    case Code.DeadlineExceeded:
      return "We could not reach the ticket service. Check your connection and try again.";
    case Code.InvalidArgument:
      return "Something in the request was not accepted. Please check and try again.";
    case Code.PermissionDenied:
      return "This is not available to you.";
    case Code.NotFound:
      return "That could not be found any more.";
    default:
      return "Something went wrong on our side. Please try again.";
  }
}

/** The longest pause the page honours from a refusal's RetryInfo: the queue books slots at
 * most 30 s ahead (`platform::gate::MAX_RETRY_AFTER`), and a wait far past that would more
 * likely be a fault than a plan. */
export const MAX_RETRY_AFTER_MS = 60_000;

/** Milliseconds until a call refused for load may be tried again: the pause the server's
 * `google.rpc.RetryInfo` names (the queue's join gate books one slot per refusal, so a crowd
 * that honours it comes back spread out), at most [`MAX_RETRY_AFTER_MS`]. Undefined when `err`
 * is not a refusal for load (RESOURCE_EXHAUSTED) or names no pause: then retrying by itself
 * is not the page's call. */
export function retryAfterMs(err: unknown): number | undefined {
  const e = ConnectError.from(err);
  if (e.code !== Code.ResourceExhausted) return undefined;
  const delay = e.findDetails(RetryInfoSchema)[0]?.retryDelay;
  if (!delay) return undefined;
  const ms = Number(delay.seconds) * 1_000 + Math.ceil(delay.nanos / 1_000_000);
  return Number.isFinite(ms) ? Math.min(Math.max(0, ms), MAX_RETRY_AFTER_MS) : undefined;
}

/** What the page says while it waits to try a refused join again by itself (`retryAt` in ms
 * since the epoch). */
export function doorText(retryAt: number, now: number): string {
  const left = secondsLeft(retryAt, now);
  const when = left <= 1 ? "in a moment" : `in ${left} s`;
  return `The waiting room is very busy at the door. We will try again for you ${when}: keep this page open.`;
}

/** Whether an error means the call may not have reached the server (retry with the same key). */
export function isNetworkError(err: unknown): boolean {
  const code = ConnectError.from(err).code;
  return code === Code.Unavailable || code === Code.DeadlineExceeded || code === Code.Unknown;
}

/** Milliseconds until the next poll of the waiting room: the server's `pollAfterSeconds`
 * (at least 1 s) with ±10 % jitter (`random` in [0, 1)), so that people who joined together
 * do not poll together. */
export function pollDelayMs(pollAfterSeconds: number, random: number): number {
  return Math.max(1, pollAfterSeconds) * 1_000 * (0.9 + 0.2 * random);
}

/** What an admitted person sends as `x-queue-token`: the admission pass, or the bare token
 * from a queue that hands out no passes. */
export function credentialOf(status: { token: string; admissionPass: string }): string {
  return status.admissionPass || status.token;
}

/** A timestamp in ms since the epoch (undefined stays undefined). */
export function msOf(t?: Timestamp): number | undefined {
  return t ? timestampMs(t) : undefined;
}

/** A date and time as a buyer reads it: weekday, date, hours and minutes (no seconds), in
 * the buyer's locale (`locale` for tests). */
export function formatWhen(ms: number, locale?: string): string {
  return new Intl.DateTimeFormat(locale, {
    weekday: "short",
    day: "numeric",
    month: "short",
    year: "numeric",
    hour: "2-digit",
    minute: "2-digit",
  }).format(ms);
}

/** A concert's dates in words: "Sun, Dec 13, 2026" or "Sun, Dec 13 – Mon, Dec 21, 2026". */
export function formatDates(first: number | undefined, last: number | undefined, count: number, locale?: string): string {
  if (!first || !last || count === 0) return "No dates on sale";
  const day = new Intl.DateTimeFormat(locale, { weekday: "short", day: "numeric", month: "short", year: "numeric" });
  const span = first === last ? day.format(first) : day.formatRange(first, last);
  return `${span} · ${count} ${count === 1 ? "date" : "dates"}`;
}

/** A price range in words ("90,000 – 150,000 won"), or undefined without prices. */
export function formatPrices(from: bigint, to: bigint): string | undefined {
  if (from <= 0n) return undefined;
  if (from === to) return formatWon(from);
  return `${from.toLocaleString("en-US")} – ${formatWon(to)}`;
}

/** How long until `seconds` pass, in words a countdown shows: "2 d 3 h", "1 h 05 min",
 * "4:09". */
export function formatWait(seconds: number): string {
  const s = Math.max(0, Math.ceil(seconds));
  const d = Math.floor(s / 86_400);
  const h = Math.floor((s % 86_400) / 3_600);
  const m = Math.floor((s % 3_600) / 60);
  if (d > 0) return `${d} d ${h} h`;
  if (h > 0) return `${h} h ${String(m).padStart(2, "0")} min`;
  return `${m}:${String(s % 60).padStart(2, "0")}`;
}

/** A concert's sale as its card says it, live: open, or opening in a countdown. */
export function saleStatus(saleOpensAt: number | undefined, now: number): { open: boolean; text: string } {
  if (saleOpensAt === undefined || saleOpensAt <= now) return { open: true, text: "On sale now" };
  return { open: false, text: `Sale opens in ${formatWait((saleOpensAt - now) / 1000)}` };
}

/** How far through the line a person is, 0..1, from the first place they saw. */
export function lineProgress(firstPosition: number, position: number): number {
  if (firstPosition <= 1) return position <= 1 ? 1 : 0;
  return Math.min(1, Math.max(0, (firstPosition - position) / (firstPosition - 1)));
}

/** A reservation the server says is HELD as a basket entry (`undefined` for any other). */
export function holdOf(r: Reservation): Hold | undefined {
  const expiresAt = msOf(r.expiresAt);
  if (r.status !== ReservationStatus.HELD || expiresAt === undefined) return undefined;
  return {
    reservationId: r.reservationId,
    concertId: r.concertId,
    scheduleId: r.scheduleId,
    seatNumber: r.seatNumber,
    grade: r.grade,
    price: Number(r.price),
    expiresAt,
  };
}

/** The server's clock minus this browser's, from a reservation the server stamped
 * (`held_at`) during a call this browser sent at `sentAt`; 0 without a stamp. The stamp
 * fell between sending and arriving, so this errs by at most the round trip, and on the
 * buyer's side: a countdown from it never shows more time than the hold has. */
export function skewOf(r: Reservation, sentAt: number): number {
  const heldAt = msOf(r.heldAt);
  return heldAt === undefined ? 0 : heldAt - sentAt;
}
