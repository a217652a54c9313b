// The booking journey, one step at a time: sign in → concert → waiting room → date → seat →
// hold (with its countdown) → top up if short → pay → confirmation → my tickets.
import { type Timestamp, timestampMs } from "@bufbuild/protobuf/wkt";
import { ConnectError } from "@connectrpc/connect";
import { useEffect, useRef, useState } from "preact/hooks";
import { as, catalog, queue, reservation, subjectOf, wallet } from "./api";
import { currentAccessToken, keepDevToken, signInWithProvider, signOut, usesOidc } from "./auth";
import type { Concert, Schedule, Seat } from "./gen/concert/catalog/v1/catalog_pb";
import { type QueueStatus, TokenState } from "./gen/concert/queue/v1/queue_pb";
import type { Payment, Reservation } from "./gen/concert/reservation/v1/reservation_pb";
import {
  credentialOf,
  describeError,
  formatCountdown,
  formatWon,
  isNetworkError,
  legend,
  lineText,
  moveFocus,
  pollDelayMs,
  reasonOf,
  reservationWord,
  SOLD_OUT_TEXT,
  secondsLeft,
  seatView,
} from "./logic";

type Step = "signin" | "concerts" | "line" | "dates" | "seats" | "held" | "confirmed" | "mine";

const when = (t?: Timestamp) => (t ? new Date(timestampMs(t)).toLocaleString() : "");

export function App() {
  const [step, setStep] = useState<Step>("signin");
  const [access, setAccess] = useState<string>();
  const [error, setError] = useState<string>();
  const [busy, setBusy] = useState(false);
  const [concerts, setConcerts] = useState<Concert[]>([]);
  const [concert, setConcert] = useState<Concert>();
  const [line, setLine] = useState<QueueStatus>();
  const [dates, setDates] = useState<Schedule[]>([]);
  const [date, setDate] = useState<Schedule>();
  const [seats, setSeats] = useState<Seat[]>([]);
  const [hold, setHold] = useState<Reservation>();
  const [payKey, setPayKey] = useState<string>();
  const [balance, setBalance] = useState<bigint>();
  const [paid, setPaid] = useState<{ payment?: Payment; reservation?: Reservation; balanceAfter: bigint }>();
  const [mine, setMine] = useState<{ reservations: Reservation[]; payments: Payment[] }>();
  const [now, setNow] = useState(Date.now());
  const heading = useRef<HTMLHeadingElement>(null);
  // Protected calls carry the admission pass (verified by catalog and reservation without a
  // call to the queue), or the bare token from a queue that hands out no passes.
  const token = line?.state === TokenState.ACTIVE ? credentialOf(line) : undefined;

  // Focus moves to each step's heading, so keyboard and screen-reader users follow along.
  useEffect(() => heading.current?.focus(), [step]);

  useEffect(() => {
    currentAccessToken()
      .then((t) => {
        if (t) void signedIn(t);
      })
      .catch((e) => setError(describeError(e)));
  }, []);

  async function run(action: () => Promise<void>) {
    setBusy(true);
    setError(undefined);
    try {
      await action();
    } catch (e) {
      const reason = e instanceof ConnectError ? reasonOf(e) : undefined;
      if (reason === "TOKEN_EXPIRED" || reason === "TOKEN_USED" || reason === "TOKEN_UNKNOWN") setStep("concerts");
      setError(describeError(e));
    } finally {
      setBusy(false);
    }
  }

  const signedIn = (t: string) =>
    run(async () => {
      setAccess(t);
      const list = await catalog.listConcerts({ pageSize: 50 }, as(t));
      setConcerts(list.concerts);
      setStep("concerts");
    });

  const join = (c: Concert) =>
    run(async () => {
      setConcert(c);
      const joined = await queue.issueToken({ concertId: c.concertId }, as(access!));
      setLine(joined.status);
      setStep("line");
    });

  // The waiting room: the WatchQueue stream, or polling GetQueueStatus at the server's pace
  // (`pollAfterSeconds`) when the stream drops (a proxy cut it, the replica is full of streams).
  useEffect(() => {
    if (step !== "line" || !line || !access) return;
    const abort = new AbortController();
    const settle = (s: QueueStatus) => {
      setLine(s);
      if (s.state === TokenState.ACTIVE) void showDates(credentialOf(s));
      if (s.state === TokenState.EXPIRED) {
        setError("Your turn has ended. Please join the waiting room again.");
        setStep("concerts");
      }
      return s.state !== TokenState.WAITING;
    };
    (async () => {
      try {
        for await (const update of queue.watchQueue({ token: line.token }, { ...as(access), timeoutMs: undefined, signal: abort.signal })) {
          if (update.status && settle(update.status)) return;
        }
      } catch {
        if (abort.signal.aborted) return;
      }
      let pace = line.pollAfterSeconds;
      while (!abort.signal.aborted) {
        try {
          const polled = await queue.getQueueStatus({ token: line.token }, as(access, undefined, abort.signal));
          if (polled.status && settle(polled.status)) return;
          pace = polled.status?.pollAfterSeconds ?? 1;
        } catch (e) {
          if (abort.signal.aborted) return;
          setError(describeError(e));
          pace = 1;
        }
        await new Promise((r) => setTimeout(r, pollDelayMs(pace, Math.random())));
      }
    })();
    return () => abort.abort();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [step, line?.token, access]);

  const leaveLine = () =>
    run(async () => {
      if (line && access) await queue.leaveQueue({ token: line.token }, as(access));
      setLine(undefined);
      setStep("concerts");
    });

  const showDates = (queueToken: string) =>
    run(async () => {
      const r = await catalog.listAvailableDates({ concertId: concert!.concertId }, as(access!, queueToken));
      setDates(r.schedules);
      setStep("dates");
    });

  const showSeats = (d: Schedule) =>
    run(async () => {
      setDate(d);
      const r = await catalog.listSeats({ scheduleId: d.scheduleId }, as(access!, token));
      setSeats(r.seats);
      setStep("seats");
    });

  const refreshSeats = async () => {
    if (!date) return;
    const r = await catalog.listSeats({ scheduleId: date.scheduleId }, as(access!, token));
    setSeats(r.seats);
  };

  const holdSeat = (seat: Seat) =>
    run(async () => {
      try {
        const r = await reservation.holdSeat({ scheduleId: date!.scheduleId, seatNumber: seat.seatNumber }, as(access!, token));
        setHold(r.reservation);
        // One key for this hold's payment, kept across retries, so a retry never pays twice.
        setPayKey(crypto.randomUUID());
        setBalance((await wallet.getBalance({}, as(access!))).balance);
        setStep("held");
      } catch (e) {
        await refreshSeats().catch(() => undefined);
        throw e;
      }
    });

  // The hold's countdown; at 0:00 the seat is gone back to everyone.
  useEffect(() => {
    if (step !== "held") return;
    const tick = setInterval(() => setNow(Date.now()), 1_000);
    return () => clearInterval(tick);
  }, [step]);
  const holdEnds = hold?.expiresAt ? timestampMs(hold.expiresAt) : 0;
  const holdLeft = secondsLeft(holdEnds, now);
  useEffect(() => {
    if (step === "held" && holdLeft === 0) {
      setError("Your hold on this seat has expired. Please choose a seat again.");
      setHold(undefined);
      void refreshSeats().finally(() => setStep("seats"));
    }
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [step, holdLeft]);

  const pay = () =>
    run(async () => {
      for (let attempt = 0; ; attempt++) {
        try {
          const r = await reservation.payReservation({ reservationId: hold!.reservationId, idempotencyKey: payKey! }, as(access!, token));
          setPaid({ payment: r.payment, reservation: r.reservation, balanceAfter: r.balanceAfter });
          setStep("confirmed");
          return;
        } catch (e) {
          // A network error may hide a payment that went through: ask again with the same key.
          if (isNetworkError(e) && attempt < 3) continue;
          // A refused debit ends the payment and releases the hold (the saga's compensation),
          // so the buyer tops up and chooses a seat again.
          if (e instanceof ConnectError && reasonOf(e) === "INSUFFICIENT_BALANCE") {
            setBalance((await wallet.getBalance({}, as(access!))).balance);
            setHold(undefined);
            await refreshSeats().catch(() => undefined);
            setStep("seats");
          }
          throw e;
        }
      }
    });

  const topUp = (amount: bigint) =>
    run(async () => {
      const r = await wallet.charge({ amount, idempotencyKey: crypto.randomUUID() }, as(access!));
      setBalance(r.balance);
    });

  const showMine = () =>
    run(async () => {
      const [r, p] = await Promise.all([
        reservation.listReservations({ pageSize: 20 }, as(access!)),
        reservation.listPayments({ pageSize: 20 }, as(access!)),
      ]);
      setMine({ reservations: r.reservations, payments: p.payments });
      setStep("mine");
    });

  const user = access ? subjectOf(access) : undefined;
  const shortBy = hold && balance !== undefined && balance < hold.price ? hold.price - balance : 0n;
  return (
    <>
      <header>
        <span class="brand">Concert tickets</span>
        {access && (
          <nav aria-label="Account">
            <span>Signed in as {user}</span>
            <button type="button" onClick={showMine} disabled={busy}>My tickets</button>
            <button type="button" onClick={() => void signOut().then(() => location.reload())}>Sign out</button>
          </nav>
        )}
      </header>
      <main>
        <p role="alert" class="error" hidden={!error}>{error}</p>
        <div aria-live="polite" class="busy">{busy ? "Working…" : ""}</div>

        {step === "signin" && <SignIn heading={heading} onToken={(t) => { keepDevToken(t); void signedIn(t); }} />}

        {step === "concerts" && (
          <section>
            <h1 ref={heading} tabIndex={-1}>Pick a concert</h1>
            <ul class="cards">
              {concerts.map((c) => (
                <li key={c.concertId}>
                  <h2>{c.title}</h2>
                  <p>{c.venue}{c.saleOpensAt ? ` · sale opens ${when(c.saleOpensAt)}` : ""}</p>
                  <button type="button" onClick={() => join(c)} disabled={busy}>Join the waiting room for {c.title}</button>
                </li>
              ))}
            </ul>
          </section>
        )}

        {step === "line" && line && (
          <section>
            <h1 ref={heading} tabIndex={-1}>Waiting room: {concert?.title}</h1>
            <p aria-live="polite" class="line">
              {line.state === TokenState.ACTIVE
                ? "It is your turn!"
                : lineText(line.position, line.waitingCount, line.estimatedWaitSeconds, line.preQueue)}
            </p>
            {line.soldOut && (
              <p role="status" class="sold-out">
                {SOLD_OUT_TEXT}{" "}
                <button type="button" onClick={leaveLine} disabled={busy}>
                  Leave the waiting room
                </button>
              </p>
            )}
            {line.preQueue && line.saleOpensAt && <p>The sale opens {when(line.saleOpensAt)}.</p>}
            <p class="hint">Keep this page open: it moves on by itself when your turn comes.</p>
          </section>
        )}

        {step === "dates" && (
          <section>
            <h1 ref={heading} tabIndex={-1}>Choose a date for {concert?.title}</h1>
            {dates.length === 0 && <p>No dates with free seats are left.</p>}
            <ul class="cards">
              {dates.map((d) => (
                <li key={d.scheduleId}>
                  <button type="button" onClick={() => showSeats(d)} disabled={busy || d.availableSeats === 0}>
                    {when(d.startsAt)} — {d.availableSeats} of {d.totalSeats} seats free
                  </button>
                </li>
              ))}
            </ul>
          </section>
        )}

        {step === "seats" && (
          <section>
            <h1 ref={heading} tabIndex={-1}>Choose a seat — {when(date?.startsAt)}</h1>
            <SeatMap seats={seats} onPick={holdSeat} disabled={busy} />
            <button type="button" onClick={() => run(refreshSeats)} disabled={busy}>Refresh the seat map</button>
          </section>
        )}

        {step === "held" && hold && (
          <section>
            <h1 ref={heading} tabIndex={-1}>Seat {hold.seatNumber} is held for you</h1>
            <p class="countdown" role="timer" aria-live="off">
              Pay within <strong>{formatCountdown(holdEnds, now)}</strong> — after that the seat goes back to everyone.
            </p>
            <p>Price {formatWon(hold.price)} · your balance {balance === undefined ? "…" : formatWon(balance)}</p>
            {shortBy > 0n && (
              <div class="topup">
                <p>Your wallet is short by {formatWon(shortBy)}: top it up to pay. Paying a
                  refused amount would release the seat.</p>
                <button type="button" onClick={() => topUp(shortBy)} disabled={busy}>Top up {formatWon(shortBy)}</button>
              </div>
            )}
            <button type="button" class="primary" onClick={pay} disabled={busy || balance === undefined || shortBy > 0n}>
              Pay {formatWon(hold.price)}
            </button>
          </section>
        )}

        {step === "confirmed" && paid && (
          <section>
            <h1 ref={heading} tabIndex={-1}>You have a ticket!</h1>
            <dl class="receipt">
              <dt>Concert</dt><dd>{concert?.title}, {concert?.venue}</dd>
              <dt>Date</dt><dd>{when(date?.startsAt)}</dd>
              <dt>Seat</dt><dd>{paid.reservation?.seatNumber}</dd>
              <dt>Paid</dt><dd>{formatWon(paid.payment?.amount ?? 0n)}</dd>
              <dt>Balance</dt><dd>{formatWon(paid.balanceAfter)}</dd>
            </dl>
            <button type="button" onClick={showMine}>See my tickets</button>
          </section>
        )}

        {step === "mine" && mine && (
          <section>
            <h1 ref={heading} tabIndex={-1}>My reservations and payments</h1>
            <h2>Reservations</h2>
            <ul>
              {mine.reservations.map((r) => (
                <li key={r.reservationId}>Seat {r.seatNumber} · {formatWon(r.price)} · {reservationWord(r.status)}</li>
              ))}
            </ul>
            <h2>Payments</h2>
            <ul>
              {mine.payments.map((p) => (
                <li key={p.paymentId}>{formatWon(p.amount)} · {when(p.createdAt)}</li>
              ))}
            </ul>
            <button type="button" onClick={() => setStep("concerts")}>Back to the concerts</button>
          </section>
        )}
      </main>
    </>
  );
}

function SignIn({ heading, onToken }: { heading: preact.RefObject<HTMLHeadingElement>; onToken: (t: string) => void }) {
  const [value, setValue] = useState("");
  if (usesOidc) {
    return (
      <section>
        <h1 ref={heading} tabIndex={-1}>Sign in to buy tickets</h1>
        <button type="button" class="primary" onClick={() => void signInWithProvider()}>Sign in</button>
      </section>
    );
  }
  return (
    <section>
      <h1 ref={heading} tabIndex={-1}>Sign in (development)</h1>
      <p>Paste a DEV-ONLY access token from <code>concertctl token --user &lt;you&gt;</code>, or open the sign-in link that <code>scripts/run-suite.sh</code> prints.</p>
      <form onSubmit={(e) => { e.preventDefault(); onToken(value); }}>
        <label for="token">Access token</label>
        <textarea id="token" rows={3} value={value} onInput={(e) => setValue(e.currentTarget.value)} required />
        <button type="submit" class="primary">Sign in</button>
      </form>
    </section>
  );
}

function SeatMap({ seats, onPick, disabled }: { seats: Seat[]; onPick: (s: Seat) => void; disabled: boolean }) {
  const [focus, setFocus] = useState(1);
  const buttons = useRef<Map<number, HTMLButtonElement>>(new Map());
  const onKey = (e: KeyboardEvent, n: number) => {
    const next = moveFocus(n, e.key);
    if (next !== n) {
      e.preventDefault();
      setFocus(next);
      buttons.current.get(next)?.focus();
    }
  };
  return (
    <>
      <div class="stage" aria-hidden="true">Stage</div>
      <div class="seatmap" role="group" aria-label="Seat map: arrow keys move, Enter holds the seat">
        {seats.map((s) => {
          const v = seatView(s, false);
          return (
            <button
              key={s.seatNumber}
              type="button"
              ref={(el) => { if (el) buttons.current.set(s.seatNumber, el); }}
              class={v.className}
              aria-label={v.label}
              title={v.label}
              aria-disabled={!v.selectable || disabled}
              tabIndex={s.seatNumber === focus ? 0 : -1}
              onKeyDown={(e) => onKey(e, s.seatNumber)}
              onClick={() => v.selectable && !disabled && onPick(s)}
            >
              <span aria-hidden="true">{s.seatNumber}{v.mark}</span>
            </button>
          );
        })}
      </div>
      <ul class="legend" aria-label="Legend">
        {legend(seats).map((g) => (
          <li key={g.grade}><span class={`swatch grade--${g.grade.toLowerCase()}`} aria-hidden="true" /> {g.grade}: {formatWon(g.price)}</li>
        ))}
        <li><span class="swatch seat--available" aria-hidden="true" /> free</li>
        <li><span class="swatch seat--on-hold" aria-hidden="true">…</span> on hold</li>
        <li><span class="swatch seat--sold" aria-hidden="true">✕</span> sold</li>
      </ul>
    </>
  );
}
