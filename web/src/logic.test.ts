import { create, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { SeatSchema, SeatStatus } from "./gen/concert/catalog/v1/catalog_pb";
import { ReservationStatus } from "./gen/concert/reservation/v1/reservation_pb";
import { ErrorInfoSchema, RetryInfoSchema } from "./gen/google/rpc/error_details_pb";
import {
  SOLD_OUT_TEXT,
  MAX_RETRY_AFTER_MS,
  credentialOf,
  describeError,
  doorText,
  formatCountdown,
  formatWon,
  isNetworkError,
  bestAvailable,
  legend,
  lineText,
  moveFocus,
  pollDelayMs,
  retryAfterMs,
  formatDates,
  formatPrices,
  formatWait,
  formatWhen,
  holdOf,
  lineProgress,
  reservationWord,
  saleStatus,
  secondsLeft,
  seatView,
  skewOf,
} from "./logic";
import { ReservationSchema } from "./gen/concert/reservation/v1/reservation_pb";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";

const seat = (n: number, status: SeatStatus, grade = "VIP", price = 150_000n) =>
  create(SeatSchema, { seatNumber: n, status, grade, price });

/** A refusal as the services send it: a code and an ErrorInfo with a reason. */
const refusal = (code: Code, reason: string) =>
  new ConnectError("refused", code, undefined, [
    { desc: ErrorInfoSchema, value: { reason, domain: "concert.example.com" } },
  ]);

describe("seat map", () => {
  it("shows status by colour class and by mark, and only available seats are selectable", () => {
    expect(seatView(seat(1, SeatStatus.AVAILABLE), false)).toMatchObject({
      className: "seat seat--available grade--vip",
      selectable: true,
      mark: "",
    });
    expect(seatView(seat(2, SeatStatus.SOLD), false)).toMatchObject({ selectable: false, mark: "✕" });
    expect(seatView(seat(3, SeatStatus.HELD), false)).toMatchObject({ className: "seat seat--on-hold grade--vip", mark: "…" });
    // A seat of mine can be picked again, to release it.
    expect(seatView(seat(4, SeatStatus.HELD), true)).toMatchObject({ className: "seat seat--mine grade--vip", mark: "★", selectable: true });
  });

  it("announces number, grade, price and status", () => {
    expect(seatView(seat(7, SeatStatus.AVAILABLE, "R", 120_000n), false).label).toBe("Seat 7, R, 120,000 won, available");
    expect(seatView(seat(7, SeatStatus.HELD, "R", 120_000n), true).label).toBe("Seat 7, R, 120,000 won, held by you (select to release)");
  });

  it("lists each grade once, dearest first", () => {
    const seats = [seat(1, 1, "VIP", 150_000n), seat(2, 1, "VIP", 150_000n), seat(31, 1, "S", 90_000n), seat(11, 1, "R", 120_000n)];
    expect(legend(seats)).toEqual([
      { grade: "VIP", price: 150_000n },
      { grade: "R", price: 120_000n },
      { grade: "S", price: 90_000n },
    ]);
  });

  it("names for each grade its front-most free seat as the best available, none when it has none free", () => {
    const seats = [
      seat(1, SeatStatus.SOLD, "VIP", 150_000n),
      seat(2, SeatStatus.HELD, "VIP", 150_000n),
      seat(11, SeatStatus.SOLD, "R", 120_000n),
      seat(14, SeatStatus.AVAILABLE, "R", 120_000n),
      seat(12, SeatStatus.AVAILABLE, "R", 120_000n),
      seat(31, SeatStatus.AVAILABLE, "S", 90_000n),
    ];
    expect(bestAvailable(seats)).toEqual([
      { grade: "VIP", price: 150_000n, seatNumber: undefined },
      { grade: "R", price: 120_000n, seatNumber: 12 },
      { grade: "S", price: 90_000n, seatNumber: 31 },
    ]);
  });

  it("names every reservation state", () => {
    expect(reservationWord(ReservationStatus.CONFIRMED)).toBe("confirmed");
    expect(reservationWord(ReservationStatus.EXPIRED)).toBe("expired");
    expect(reservationWord(ReservationStatus.REFUNDED)).toBe("given back, refunded");
  });

  it("moves focus with the arrow keys and stays on the map", () => {
    expect(moveFocus(1, "ArrowRight")).toBe(2);
    expect(moveFocus(1, "ArrowLeft")).toBe(1);
    expect(moveFocus(5, "ArrowDown")).toBe(15);
    expect(moveFocus(45, "ArrowDown")).toBe(45);
    expect(moveFocus(15, "ArrowUp")).toBe(5);
    expect(moveFocus(15, "Enter")).toBe(15);
  });
});

describe("countdown", () => {
  it("counts m:ss down to 0:00 and never below", () => {
    expect(formatCountdown(300_000, 0)).toBe("5:00");
    expect(formatCountdown(300_000, 1)).toBe("5:00");
    expect(formatCountdown(300_000, 1_000)).toBe("4:59");
    expect(formatCountdown(65_000, 0)).toBe("1:05");
    expect(formatCountdown(0, 5_000)).toBe("0:00");
    expect(secondsLeft(0, 5_000)).toBe(0);
    expect(secondsLeft(2_500, 0)).toBe(3);
  });
});

describe("words", () => {
  it("formats won with thousands separators", () => {
    expect(formatWon(150000n)).toBe("150,000 won");
    expect(formatWon(0)).toBe("0 won");
  });

  it("tells the place in line and the pre-queue", () => {
    expect(lineText(3n, 10n, 30n, false)).toBe("You are number 3 of 10 waiting — less than a minute to go.");
    expect(lineText(3n, 10n, 61n, false)).toBe("You are number 3 of 10 waiting — about 2 min to go.");
    expect(lineText(3n, 10n, undefined, false)).toBe("You are number 3 of 10 waiting.");
    expect(lineText(0n, 10n, undefined, true)).toMatch(/pre-queue/);
  });

  it("turns every refusal a buyer meets into words, never a code", () => {
    const cases: [Code, string, RegExp][] = [
      [Code.AlreadyExists, "SEAT_UNAVAILABLE", /just took this seat/],
      [Code.FailedPrecondition, "HOLD_EXPIRED", /hold .* has expired/],
      [Code.FailedPrecondition, "RESERVATION_NOT_HELD", /hold .* has expired/],
      [Code.FailedPrecondition, "INSUFFICIENT_BALANCE", /balance was too low/],
      [Code.FailedPrecondition, "HOLD_LIMIT", /as many seats as one person may/],
      [Code.Unauthenticated, "TOKEN_EXPIRED", /turn has ended.*join the waiting room again/],
      [Code.Unauthenticated, "TOKEN_USED", /turn has ended/],
      [Code.ResourceExhausted, "RATE_LIMITED", /very busy/],
    ];
    for (const [code, reason, words] of cases) {
      const text = describeError(refusal(code, reason));
      expect(text, reason).toMatch(words);
      expect(text).not.toMatch(/[A-Z_]{6,}/);
    }
    expect(describeError(new ConnectError("x", Code.Unavailable))).toMatch(/could not reach/);
    expect(describeError(new Error("boom"))).toMatch(/Something went wrong/);
  });

  it("reads the reason from the binary details a grpc-web response carries", () => {
    const detail = { type: "google.rpc.ErrorInfo", value: toBinary(ErrorInfoSchema, create(ErrorInfoSchema, { reason: "HOLD_LIMIT" })) };
    // As connect-web builds it from grpc-status-details-bin: raw type and bytes.
    const err = new ConnectError("refused", Code.FailedPrecondition);
    err.details.push(detail);
    expect(describeError(err)).toMatch(/as many seats/);
  });

  it("knows which failures may not have reached the server", () => {
    expect(isNetworkError(new ConnectError("x", Code.Unavailable))).toBe(true);
    expect(isNetworkError(refusal(Code.FailedPrecondition, "INSUFFICIENT_BALANCE"))).toBe(false);
  });
});

describe("the waiting room's pace", () => {
  it("follows the server's interval, at least a second, within 10 % jitter", () => {
    expect(pollDelayMs(1, 0)).toBe(900);
    expect(pollDelayMs(30, 0.5)).toBe(30_000);
    expect(pollDelayMs(30, 0.999)).toBeLessThan(33_000);
    expect(pollDelayMs(0, 0.5)).toBe(1_000);
  });
  it("sends the admission pass when there is one", () => {
    expect(credentialOf({ token: "t", admissionPass: "a.b.c" })).toBe("a.b.c");
    expect(credentialOf({ token: "t", admissionPass: "" })).toBe("t");
  });
});

describe("a sold-out line", () => {
  it("says so in words and offers to leave", () => {
    expect(SOLD_OUT_TEXT).toMatch(/Every seat is sold/);
    expect(SOLD_OUT_TEXT).toMatch(/leave/);
  });
});

describe("dates, prices and the sale", () => {
  const at = Date.UTC(2026, 11, 13, 18, 30, 45);
  it("says a date with its weekday and without seconds", () => {
    const text = formatWhen(at, "en-US");
    expect(text).toMatch(/^Sun, Dec 13, 2026/);
    expect(text).not.toMatch(/:45/);
  });
  it("gives a concert's dates as a span with their count", () => {
    expect(formatDates(at, at, 1, "en-US")).toMatch(/^Sun, Dec 13, 2026 · 1 date$/);
    expect(formatDates(at, at + 8 * 86_400_000, 3, "en-US")).toMatch(/Dec 13.*21, 2026 · 3 dates$/);
    expect(formatDates(undefined, undefined, 0)).toBe("No dates on sale");
  });
  it("gives the price range, or nothing without prices", () => {
    expect(formatPrices(90_000n, 150_000n)).toBe("90,000 – 150,000 won");
    expect(formatPrices(90_000n, 90_000n)).toBe("90,000 won");
    expect(formatPrices(0n, 0n)).toBeUndefined();
  });
  it("counts down to a sale's opening, and says when it is open", () => {
    expect(saleStatus(undefined, 0)).toEqual({ open: true, text: "On sale now" });
    expect(saleStatus(1_000, 2_000).open).toBe(true);
    expect(saleStatus(65_000, 0)).toEqual({ open: false, text: "Sale opens in 1:05" });
    expect(saleStatus(3_600_000 + 5 * 60_000, 0).text).toBe("Sale opens in 1 h 05 min");
    expect(formatWait(2 * 86_400 + 3 * 3_600)).toBe("2 d 3 h");
  });
  it("measures progress through the line from the first place seen", () => {
    expect(lineProgress(101, 101)).toBe(0);
    expect(lineProgress(101, 51)).toBe(0.5);
    expect(lineProgress(101, 1)).toBe(1);
    expect(lineProgress(1, 1)).toBe(1);
    expect(lineProgress(10, 50)).toBe(0);
  });
});

describe("holds from the server", () => {
  const held = create(ReservationSchema, {
    reservationId: "r1",
    concertId: "c1",
    scheduleId: "s1",
    seatNumber: 12,
    grade: "R",
    price: 120_000n,
    status: ReservationStatus.HELD,
    heldAt: timestampFromMs(1_000_000),
    expiresAt: timestampFromMs(1_300_000),
  });
  it("keeps a live hold with its server-clock expiry, and nothing else", () => {
    expect(holdOf(held)).toEqual({
      reservationId: "r1",
      concertId: "c1",
      scheduleId: "s1",
      seatNumber: 12,
      grade: "R",
      price: 120_000,
      expiresAt: 1_300_000,
    });
    expect(holdOf({ ...held, status: ReservationStatus.CONFIRMED })).toBeUndefined();
  });
  it("measures the server's clock against this browser's, so a 5-minute hold counts down from 5:00", () => {
    // The server's clock is 6 s ahead: the browser sent the hold at its 994.0 s, the server
    // stamped it at its 1,000.0 s (the call took no time there), the answer arrived 0.3 s later.
    const sentAt = 1_000_000 - 6_000;
    const skew = skewOf(held, sentAt);
    expect(skew).toBe(6_000);
    expect(formatCountdown(1_300_000, sentAt + 300 + skew)).toBe("5:00");
    // A slow call (the stamp late in the round trip) errs toward less time, never more.
    const slow = skewOf(held, sentAt - 2_000);
    expect(formatCountdown(1_300_000, sentAt + 300 + slow)).toBe("4:58");
  });
});

describe("a refusal for load", () => {
  /** RESOURCE_EXHAUSTED as the queue's gate sends it: the reason and the booked slot. */
  const busy = (code: Code, seconds: bigint, nanos: number) =>
    new ConnectError("refused", code, undefined, [
      { desc: ErrorInfoSchema, value: { reason: "RATE_LIMITED", domain: "concert.example.com" } },
      { desc: RetryInfoSchema, value: { retryDelay: { seconds, nanos } } },
    ]);

  it("is retried after the pause the server booked, in whole milliseconds", () => {
    expect(retryAfterMs(busy(Code.ResourceExhausted, 6n, 250_000_000))).toBe(6_250);
    expect(retryAfterMs(busy(Code.ResourceExhausted, 0n, 200_000))).toBe(1);
  });

  it("read from the binary details a grpc-web response carries", () => {
    const err = new ConnectError("refused", Code.ResourceExhausted);
    const info = create(RetryInfoSchema, { retryDelay: { seconds: 3n, nanos: 0 } });
    err.details.push({ type: "google.rpc.RetryInfo", value: toBinary(RetryInfoSchema, info) });
    expect(retryAfterMs(err)).toBe(3_000);
  });

  it("is not retried by the page when it names no pause or is not about load", () => {
    expect(retryAfterMs(refusal(Code.ResourceExhausted, "RATE_LIMITED"))).toBeUndefined();
    expect(retryAfterMs(busy(Code.FailedPrecondition, 5n, 0))).toBeUndefined();
    expect(retryAfterMs(new ConnectError("x", Code.Unavailable))).toBeUndefined();
    expect(retryAfterMs(new Error("boom"))).toBeUndefined();
  });

  it("waits at most a minute, whatever the pause says", () => {
    expect(retryAfterMs(busy(Code.ResourceExhausted, 86_400n, 0))).toBe(MAX_RETRY_AFTER_MS);
    expect(retryAfterMs(busy(Code.ResourceExhausted, -5n, 0))).toBe(0);
  });

  it("says when the page tries again, counting down", () => {
    expect(doorText(16_000, 10_000)).toMatch(/try again for you in 6 s/);
    expect(doorText(10_500, 10_000)).toMatch(/in a moment/);
    expect(doorText(9_000, 10_000)).toMatch(/in a moment/);
  });
});
