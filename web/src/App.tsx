// The booking page: a router over the steps of a purchase, each with its own URL, so Back,
// Forward, reload and a second tab work:
//   /                                   concerts
//   /concerts/:concertId/line           the waiting room
//   /concerts/:concertId/dates          the dates of the concert
//   /concerts/:concertId/dates/:id      the live seat map and the basket
//   /checkout                           the order summary and payment
//   /orders/:paymentId                  the confirmation
//   /tickets                            my tickets
// State lives in the tab's session (session.ts), not in the views.
import { LocationProvider, Route, Router, useLocation } from "preact-iso";
import { useCallback, useEffect, useMemo, useReducer, useState } from "preact/hooks";
import { subjectOf } from "./api";
import { currentAccessToken, keepDevToken, signOut } from "./auth";
import { HoldBar } from "./components/HoldBar";
import { syncHolds } from "./holds";
import { describeError } from "./logic";
import { Checkout } from "./pages/Checkout";
import { Concerts } from "./pages/Concerts";
import { Confirmation } from "./pages/Confirmation";
import { Dates } from "./pages/Dates";
import { MyTickets } from "./pages/MyTickets";
import { NotFound } from "./pages/NotFound";
import { Seats } from "./pages/Seats";
import { SignIn } from "./pages/SignIn";
import { WaitingRoom } from "./pages/WaitingRoom";
import { type Action, basket, clear, expired, load, reduce, save } from "./session";
import { runner, type Shop, ShopContext } from "./shop";

export function App() {
  const [access, setAccess] = useState<string>();
  const [checked, setChecked] = useState(false);
  const [error, setError] = useState<string>();
  // The token is read at load and again whenever the fragment changes: a sign-in link
  // opened in a tab where the page is already open signs in there.
  useEffect(() => {
    const take = () =>
      currentAccessToken()
        .then((t) => {
          if (t) setAccess(t);
        })
        .catch((e) => setError(describeError(e)))
        .finally(() => setChecked(true));
    void take();
    window.addEventListener("hashchange", take);
    return () => window.removeEventListener("hashchange", take);
  }, []);

  return (
    <LocationProvider>
      {access ? (
        <SignedIn access={access} />
      ) : (
        <>
          <Header />
          <main>
            <p role="alert" class="error" hidden={!error}>
              {error}
            </p>
            {checked && (
              <SignIn
                onToken={(t) => {
                  keepDevToken(t);
                  setAccess(t.trim());
                }}
              />
            )}
          </main>
        </>
      )}
    </LocationProvider>
  );
}

function Header({ user }: { user?: string }) {
  return (
    <header>
      <a class="brand" href="/">
        Concert tickets
      </a>
      {user && (
        <nav aria-label="Account">
          <span class="who" title={`Signed in as ${user}`}>
            {user}
          </span>
          <a href="/tickets">My tickets</a>
          <button
            type="button"
            class="link"
            onClick={() => {
              clear(sessionStorage);
              void signOut().then(() => location.assign("/"));
            }}
          >
            Sign out
          </button>
        </nav>
      )}
    </header>
  );
}

function SignedIn({ access }: { access: string }) {
  const [session, dispatch] = useReducer(reduce, undefined, () => load(sessionStorage));
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string>();
  const [now, setNow] = useState(() => Date.now());
  const { path, route } = useLocation();

  useEffect(() => save(sessionStorage, session), [session]);
  useEffect(() => {
    const tick = setInterval(() => setNow(Date.now()), 1_000);
    return () => clearInterval(tick);
  }, []);
  // A new step starts without the last step's error.
  useEffect(() => setError(undefined), [path]);

  // The server is the authority on holds: at start (a reload, a second tab), the live holds
  // it lists replace what the tab remembers, with those placed elsewhere.
  useEffect(() => {
    syncHolds(access, dispatch).catch(() => undefined);
  }, [access]);

  const serverNow = now + session.skewMs;
  // Holds that run out leave the basket, and the buyer is told.
  const ended = expired(session.holds, serverNow);
  useEffect(() => {
    if (ended.length === 0) return;
    dispatch({ type: "released", reservationIds: ended.map((h) => h.reservationId) });
    const seats = ended.map((h) => h.seatNumber).join(", ");
    setError(`Your hold on seat ${seats} has expired. Please choose a seat again.`);
    const first = ended[0];
    if (path === "/checkout" && basket(session).length === ended.length) {
      route(`/concerts/${first.concertId}/dates/${first.scheduleId}`, true);
    }
  }, [ended.map((h) => h.reservationId).join(",")]); // eslint-disable-line react-hooks/exhaustive-deps

  const fail = useCallback((m: string | undefined) => setError(m), []);
  // Every change of the session also reads the clock: a countdown first painted with the
  // last tick's time (up to a second old) would show a 5-minute hold as 5:01.
  const act = useCallback((action: Action) => {
    dispatch(action);
    setNow(Date.now());
  }, []);
  const run = useMemo(() => runner(setBusy, fail, act), [fail, act]);
  const shop: Shop = { access, session, dispatch: act, run, busy, fail, now, serverNow };
  const shopping = path.startsWith("/concerts/") || path === "/checkout";

  return (
    <ShopContext.Provider value={shop}>
      <Header user={subjectOf(access)} />
      {shopping && <HoldBar />}
      <main>
        <p role="alert" class="error" hidden={!error}>
          {error}
        </p>
        <div aria-live="polite" class="busy">
          {busy ? "Working…" : ""}
        </div>
        <Router>
          <Route path="/" component={Concerts} />
          <Route path="/concerts/:concertId/line" component={WaitingRoom} />
          <Route path="/concerts/:concertId/dates" component={Dates} />
          <Route path="/concerts/:concertId/dates/:scheduleId" component={Seats} />
          <Route path="/checkout" component={Checkout} />
          <Route path="/orders/:paymentId" component={Confirmation} />
          <Route path="/tickets" component={MyTickets} />
          <Route default component={NotFound} />
        </Router>
      </main>
    </ShopContext.Provider>
  );
}
