// Joining a concert's waiting room: one place the concert list and the waiting room share.
import { useCallback, useEffect, useRef, useState } from "preact/hooks";
import { as, queue } from "./api";
import type { Concert } from "./gen/concert/catalog/v1/catalog_pb";
import { type IssueTokenResponse, TokenState } from "./gen/concert/queue/v1/queue_pb";
import { credentialOf, doorText, retryAfterMs } from "./logic";
import type { Action } from "./session";

/** The shortest pause between two tries of a refused join, whatever the refusal said. */
export const MIN_RETRY_PAUSE_MS = 250;

/** Told when the page will try a refused join again (ms since the epoch), and `undefined`
 * once it is no longer waiting. */
export type OnDoorWait = (retryAt: number | undefined) => void;

/** Takes a place in `concert`'s waiting room and keeps it in the session; the URL to go to.
 *
 * In a flood the queue refuses joins past its rate before looking at them (RESOURCE_EXHAUSTED,
 * reason RATE_LIMITED or OVERLOADED) and books each refused caller a slot, named in the
 * refusal's RetryInfo. The page waits for that slot and tries again by itself, as often as
 * it is told to, saying meanwhile when (`onWait`): a buyer who pressed "Join" once is not
 * asked to keep pressing it, and a crowd that follows the slots comes back spread out
 * rather than in waves (never sooner than [`MIN_RETRY_PAUSE_MS`]). Any other refusal is
 * thrown; when `signal` aborts (the buyer stopped waiting or left the page) no further call
 * is made and the last refusal is thrown. Tested in join.test.ts. */
export async function join(
  access: string,
  concert: Concert,
  dispatch: (a: Action) => void,
  onWait?: OnDoorWait,
  signal?: AbortSignal,
): Promise<string> {
  let joined: IssueTokenResponse;
  try {
    for (;;) {
      try {
        joined = await queue.issueToken({ concertId: concert.concertId }, as(access, undefined, signal));
        break;
      } catch (e) {
        const pause = retryAfterMs(e);
        if (pause === undefined || signal?.aborted) throw e;
        // Never sooner than MIN_RETRY_PAUSE_MS: a pause of zero (a replica that is merely
        // shedding) must not turn a waiting page into a loop of calls.
        const wait = Math.max(pause, MIN_RETRY_PAUSE_MS);
        onWait?.(Date.now() + wait);
        await sleep(wait, signal);
        // Stopped while waiting: no further call, and the last refusal stands.
        if (signal?.aborted) throw e;
      }
    }
  } finally {
    onWait?.(undefined);
  }
  const status = joined.status;
  if (!status) throw new Error("the queue answered without a status");
  const admitted = status.state === TokenState.ACTIVE;
  dispatch({
    type: "joined",
    admission: {
      concertId: concert.concertId,
      title: concert.title,
      venue: concert.venue,
      token: status.token,
      credential: admitted ? credentialOf(status) : "",
      firstPosition: Number(status.position),
    },
  });
  return admitted ? `/concerts/${concert.concertId}/dates` : `/concerts/${concert.concertId}/line`;
}

/** A refused join the page is waiting to try again: for which concert, and when. */
export type Door = { concertId: string; retryAt: number };

/** [`join`] for a page: the join waiting at the door (to show), `stop` to give up waiting
 * (also done when the page closes), and `enter`, which resolves to the URL to go to, or to
 * `undefined` when the wait was stopped. */
export function useJoin(access: string, dispatch: (a: Action) => void) {
  const [door, setDoor] = useState<Door>();
  const waitingRef = useRef<AbortController>();
  useEffect(() => () => waitingRef.current?.abort(), []);
  const stop = useCallback(() => waitingRef.current?.abort(), []);
  const enter = useCallback(
    async (concert: Concert): Promise<string | undefined> => {
      waitingRef.current?.abort();
      const mine = new AbortController();
      waitingRef.current = mine;
      const onWait: OnDoorWait = (retryAt) =>
        setDoor(retryAt === undefined ? undefined : { concertId: concert.concertId, retryAt });
      try {
        return await join(access, concert, dispatch, onWait, mine.signal);
      } catch (e) {
        if (mine.signal.aborted) return undefined;
        throw e;
      }
    },
    [access, dispatch],
  );
  return { door, enter, stop };
}

/** What the page shows while a join waits for its slot: when it tries again, and a way to
 * stop waiting. Announced politely to screen readers as it counts down. */
export function DoorNotice({ door, now, stop }: { door: Door; now: number; stop: () => void }) {
  return (
    <p role="status" class="door">
      {doorText(door.retryAt, now)}{" "}
      <button type="button" onClick={stop}>
        Stop trying
      </button>
    </p>
  );
}

/** Resolves after `ms`, or at once when `signal` aborts. */
function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
  });
}
