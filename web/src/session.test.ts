import { describe, expect, it } from "vitest";
import { type Admission, EMPTY, type Hold, type Session, basket, expired, firstExpiry, load, payKeyFor, reduce, save, total } from "./session";

const hold = (seatNumber: number, over: Partial<Hold> = {}): Hold => ({
  reservationId: `r${seatNumber}`,
  concertId: "c1",
  scheduleId: "s1",
  seatNumber,
  grade: "R",
  price: 100_000,
  expiresAt: 300_000 + seatNumber,
  ...over,
});
const admission: Admission = { concertId: "c1", title: "Aurora", venue: "Hall", token: "t1", credential: "", firstPosition: 40 };

/** A Storage stand-in over a Map (sessionStorage's three methods the session uses). */
function memory() {
  const m = new Map<string, string>();
  return {
    getItem: (k: string) => m.get(k) ?? null,
    setItem: (k: string, v: string) => void m.set(k, v),
    removeItem: (k: string) => void m.delete(k),
  };
}

describe("the tab's session", () => {
  it("follows a purchase: join, wait, admitted, hold, pay", () => {
    let s = reduce(EMPTY, { type: "joined", admission });
    s = reduce(s, { type: "position", position: 30 });
    expect(s.admission?.firstPosition).toBe(40);
    s = reduce(s, { type: "admitted", credential: "pass" });
    s = reduce(s, { type: "held", hold: hold(3), skewMs: 6_000 });
    s = reduce(s, { type: "held", hold: hold(1), skewMs: 6_000 });
    expect(basket(s).map((h) => h.seatNumber)).toEqual([1, 3]);
    expect(total(basket(s))).toBe(200_000);
    expect(s.skewMs).toBe(6_000);
    s = reduce(s, { type: "payKey", ids: "r1,r3", key: "k" });
    s = reduce(s, {
      type: "paid",
      reservationIds: ["r1", "r3"],
      order: { paymentId: "p", amount: 200_000, balanceAfter: 0, concertTitle: "Aurora", venue: "Hall", seats: [] },
    });
    // Paying spends the turn and empties the basket; the order stays for the confirmation.
    expect(s.admission).toBeUndefined();
    expect(s.holds).toEqual([]);
    expect(s.payKey).toBeUndefined();
    expect(s.lastOrder?.paymentId).toBe("p");
  });

  it("keeps the payment key for the same seats, and makes a new one when they change", () => {
    const s = { ...EMPTY, holds: [hold(1), hold(2)], payKey: { ids: "r1,r2", key: "kept" } };
    let made = 0;
    const newKey = () => `new${++made}`;
    expect(payKeyFor(s, [hold(2), hold(1)], newKey)).toEqual({ ids: "r1,r2", key: "kept", fresh: false });
    expect(payKeyFor(s, [hold(1)], newKey)).toEqual({ ids: "r1", key: "new1", fresh: true });
  });

  it("drops released and expired holds; the server's list replaces the tab's", () => {
    let s: Session = { ...EMPTY, admission, holds: [hold(1), hold(2), hold(3)] };
    s = reduce(s, { type: "released", reservationIds: ["r2"] });
    expect(s.holds.map((h) => h.seatNumber)).toEqual([1, 3]);
    expect(firstExpiry(s.holds)).toBe(300_001);
    expect(expired(s.holds, 300_002).map((h) => h.seatNumber)).toEqual([1]);
    s = reduce(s, { type: "synced", holds: [hold(7)] });
    expect(s.holds.map((h) => h.seatNumber)).toEqual([7]);
    expect(firstExpiry([])).toBeUndefined();
  });

  it("shops one concert: the basket holds its seats only, or every hold once the turn ended", () => {
    let s: Session = { ...EMPTY, admission, holds: [hold(1), hold(2, { concertId: "c2", reservationId: "x2" })] };
    expect(basket(s).map((h) => h.reservationId)).toEqual(["r1"]);
    s = reduce(s, { type: "turnEnded" });
    expect(basket(s).map((h) => h.reservationId)).toEqual(["r1", "x2"]);
  });

  it("survives a reload through storage, and a broken entry starts empty", () => {
    const storage = memory();
    const s = reduce({ ...EMPTY, holds: [hold(5)] }, { type: "joined", admission });
    save(storage, s);
    expect(load(storage)).toEqual(s);
    storage.setItem("concert.session.v1", "{not json");
    expect(load(storage)).toEqual(EMPTY);
    expect(load(memory())).toEqual(EMPTY);
  });
});
