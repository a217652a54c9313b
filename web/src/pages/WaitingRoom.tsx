import { useLocation, useRoute } from "preact-iso";
import { useEffect, useState } from "preact/hooks";
import { as, queue } from "../api";
import { useConcert } from "../concerts";
import { type QueueStatus, TokenState } from "../gen/concert/queue/v1/queue_pb";
import { DoorNotice, useJoin } from "../join";
import { credentialOf, describeError, lineProgress, lineText, msOf, pollDelayMs, retryAfterMs, SOLD_OUT_TEXT, formatWhen } from "../logic";
import { Heading, turnEnded, useShop } from "../shop";

/** The waiting room: the WatchQueue stream, or polling GetQueueStatus at the server's pace
 * (`pollAfterSeconds`) when the stream drops (a proxy cut it, the replica is full of
 * streams). Moves on to the dates by itself when the turn comes. */
export function WaitingRoom() {
  const { params } = useRoute();
  const concertId = params.concertId ?? "";
  const { access, session, dispatch, run, busy, fail, now } = useShop();
  const { route } = useLocation();
  const concert = useConcert(access, concertId);
  const admission = session.admission?.concertId === concertId ? session.admission : undefined;
  const [line, setLine] = useState<QueueStatus>();
  const { door, enter: join, stop } = useJoin(access, dispatch);

  // Admitted (now, or before a reload): on to the dates; the line is not a step to go Back to.
  useEffect(() => {
    if (admission?.credential) route(`/concerts/${concertId}/dates`, true);
  }, [admission?.credential, concertId, route]);

  useEffect(() => {
    if (!admission || admission.credential) return;
    const token = admission.token;
    const abort = new AbortController();
    const settle = (s: QueueStatus) => {
      setLine(s);
      dispatch({ type: "position", position: Number(s.position) });
      if (s.state === TokenState.ACTIVE) dispatch({ type: "admitted", credential: credentialOf(s) });
      if (s.state === TokenState.EXPIRED) {
        dispatch({ type: "turnEnded" });
        fail("Your turn has ended. Please join the waiting room again.");
      }
      return s.state !== TokenState.WAITING;
    };
    /** Whether `e` ended the turn (then the tab's admission is dropped and the buyer told). */
    const ended = (e: unknown) => {
      if (!turnEnded(e)) return false;
      dispatch({ type: "turnEnded" });
      fail(describeError(e));
      return true;
    };
    (async () => {
      try {
        const stream = queue.watchQueue({ token }, { ...as(access), timeoutMs: undefined, signal: abort.signal });
        for await (const update of stream) {
          if (update.status && settle(update.status)) return;
        }
      } catch (e) {
        if (abort.signal.aborted || ended(e)) return;
      }
      let pace = 1;
      while (!abort.signal.aborted) {
        // The server's pause after a refusal for load (RetryInfo), if later than the pace.
        let pause = 0;
        try {
          const polled = await queue.getQueueStatus({ token }, as(access, undefined, abort.signal));
          if (polled.status && settle(polled.status)) return;
          pace = polled.status?.pollAfterSeconds ?? 1;
        } catch (e) {
          if (abort.signal.aborted || ended(e)) return;
          // Refused for load: the place is kept, and the page asks again when the server
          // said to (RetryInfo), or at its last pace if later, never sooner: an overloaded
          // waiting room is not asked twice as often by everyone far back in line. Nothing
          // for the buyer to do, so no error line; anything else is said.
          const asked = retryAfterMs(e);
          if (asked === undefined) fail(describeError(e));
          pause = asked ?? 0;
        }
        await new Promise((r) => setTimeout(r, Math.max(pause, pollDelayMs(pace, Math.random()))));
      }
    })();
    return () => abort.abort();
  }, [access, admission?.token, admission?.credential, dispatch, fail]); // eslint-disable-line react-hooks/exhaustive-deps

  const leave = () =>
    run(async () => {
      if (admission) await queue.leaveQueue({ token: admission.token }, as(access));
      dispatch({ type: "turnEnded" });
      route("/");
    });

  const title = admission?.title ?? concert?.title ?? "this concert";
  if (!admission) {
    return (
      <section>
        <Heading>Waiting room: {title}</Heading>
        <p>You are not in this concert's waiting room.</p>
        <button
          type="button"
          class="primary"
          disabled={busy || !concert}
          onClick={() =>
            concert &&
            run(async () => {
              const next = await join(concert);
              if (next) route(next, true);
            })
          }
        >
          Join the waiting room
        </button>
        {door && <DoorNotice door={door} now={now} stop={stop} />}
      </section>
    );
  }
  const position = Number(line?.position ?? admission.firstPosition);
  const progress = lineProgress(admission.firstPosition, position);
  const opensAt = msOf(line?.saleOpensAt);
  return (
    <section>
      <Heading>Waiting room: {title}</Heading>
      <p aria-live="polite" class="line">
        {line?.state === TokenState.ACTIVE
          ? "It is your turn!"
          : line
            ? lineText(line.position, line.waitingCount, line.estimatedWaitSeconds, line.preQueue)
            : "Finding your place in line…"}
      </p>
      {line && !line.preQueue && (
        <progress class="line-progress" max={100} value={Math.round(progress * 100)} aria-label="Your progress through the line">
          {Math.round(progress * 100)} %
        </progress>
      )}
      {line?.soldOut && (
        <p role="status" class="sold-out">
          {SOLD_OUT_TEXT}{" "}
          <button type="button" onClick={leave} disabled={busy}>
            Leave the waiting room
          </button>
        </p>
      )}
      {line?.preQueue && opensAt && <p>The sale opens {formatWhen(opensAt)}.</p>}
      <p class="hint">Keep this page open: it moves on by itself when your turn comes. Reloading keeps your place.</p>
      {!line?.soldOut && (
        <button type="button" onClick={leave} disabled={busy}>
          Leave the waiting room
        </button>
      )}
    </section>
  );
}
