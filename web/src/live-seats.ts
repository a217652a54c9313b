// The live seat map of one date: CatalogService.WatchSeats (the whole map at once, then again
// within a second of any change), and while the stream cannot be had (refused for load, the
// feed lost, a proxy that cuts streams), polling ListSeats every few seconds before trying the
// stream again. A seat this page just lost a race for is shown taken until the next map.
import { useCallback, useEffect, useState } from "preact/hooks";
import { as, catalog } from "./api";
import { type Seat, SeatStatus } from "./gen/concert/catalog/v1/catalog_pb";
import { turnEnded } from "./shop";

/** How often the fallback polls, and how many polls before the stream is tried again. */
const POLL_MS = 3_000;
const POLLS_BEFORE_RETRY = 5;

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(t);
      resolve();
    });
  });

export type LiveSeats = {
  seats: Seat[];
  /** Whether the map is on the stream (else polled). */
  live: boolean;
  /** Marks `seat` taken now, before the next map says so (a lost race). */
  markTaken: (seatNumber: number) => void;
};

export function useLiveSeats(
  access: string,
  credential: string | undefined,
  scheduleId: string,
  onTurnEnded: (e: unknown) => void,
): LiveSeats {
  const [seats, setSeats] = useState<Seat[]>([]);
  const [live, setLive] = useState(false);

  useEffect(() => {
    if (!credential) return;
    const abort = new AbortController();
    const { signal } = abort;
    (async () => {
      while (!signal.aborted) {
        try {
          const stream = catalog.watchSeats({ scheduleId }, { ...as(access, credential), timeoutMs: undefined, signal });
          for await (const map of stream) {
            setSeats(map.seats);
            setLive(true);
          }
          // Ended OK: the stream's lifetime is up; open the next one at once.
          continue;
        } catch (e) {
          if (signal.aborted) return;
          setLive(false);
          if (turnEnded(e)) return onTurnEnded(e);
        }
        for (let i = 0; i < POLLS_BEFORE_RETRY && !signal.aborted; i++) {
          try {
            setSeats((await catalog.listSeats({ scheduleId }, as(access, credential, signal))).seats);
          } catch (e) {
            if (signal.aborted) return;
            if (turnEnded(e)) return onTurnEnded(e);
          }
          await sleep(POLL_MS, signal);
        }
      }
    })();
    return () => abort.abort();
  }, [access, credential, scheduleId]); // eslint-disable-line react-hooks/exhaustive-deps

  const markTaken = useCallback((seatNumber: number) => {
    setSeats((all) =>
      all.map((s) => (s.seatNumber === seatNumber && s.status === SeatStatus.AVAILABLE ? { ...s, status: SeatStatus.HELD } : s)),
    );
  }, []);
  return { seats, live, markTaken };
}
