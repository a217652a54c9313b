import { create, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { SeatSchema, SeatStatus } from "./gen/concert/catalog/v1/catalog_pb";
import { ReservationStatus } from "./gen/concert/reservation/v1/reservation_pb";
import { ErrorInfoSchema } from "./gen/google/rpc/error_details_pb";
import {
  SOLD_OUT_TEXT,
  credentialOf,
  describeError,
  formatCountdown,
  formatWon,
  isNetworkError,
  legend,
  lineText,
  moveFocus,
  pollDelayMs,
  reservationWord,
  secondsLeft,
  seatView,
} from "./logic";

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
    expect(seatView(seat(4, SeatStatus.HELD), true)).toMatchObject({ className: "seat seat--mine grade--vip", mark: "★", selectable: false });
  });

  it("announces number, grade, price and status", () => {
    expect(seatView(seat(7, SeatStatus.AVAILABLE, "R", 120_000n), false).label).toBe("Seat 7, R, 120,000 won, available");
    expect(seatView(seat(7, SeatStatus.HELD, "R", 120_000n), true).label).toBe("Seat 7, R, 120,000 won, held by you");
  });

  it("lists each grade once, dearest first", () => {
    const seats = [seat(1, 1, "VIP", 150_000n), seat(2, 1, "VIP", 150_000n), seat(31, 1, "S", 90_000n), seat(11, 1, "R", 120_000n)];
    expect(legend(seats)).toEqual([
      { grade: "VIP", price: 150_000n },
      { grade: "R", price: 120_000n },
      { grade: "S", price: 90_000n },
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
      [Code.FailedPrecondition, "HOLD_LIMIT", /as many seats as allowed/],
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
