import { timestampMs } from "@bufbuild/protobuf/wkt";
import { useLocation } from "preact-iso";
import { useEffect, useState } from "preact/hooks";
import { concerts } from "../concerts";
import type { Concert } from "../gen/concert/catalog/v1/catalog_pb";
import { DoorNotice, useJoin } from "../join";
import { formatDates, formatPrices, msOf, saleStatus } from "../logic";
import { Heading, useShop } from "../shop";

/** The concert list: dates, prices, the sale's status (a live countdown before it opens). */
export function Concerts() {
  const { access, session, dispatch, run, busy, now } = useShop();
  const { route } = useLocation();
  const [list, setList] = useState<Concert[]>();
  const { door, enter: join, stop } = useJoin(access, dispatch);
  useEffect(() => {
    void run(async () => setList(await concerts(access, true)));
  }, [access, run]);

  const enter = (c: Concert) =>
    run(async () => {
      // This tab is already in the concert's line (or admitted): go back there.
      const mine = session.admission;
      if (mine?.concertId === c.concertId) {
        route(mine.credential ? `/concerts/${c.concertId}/dates` : `/concerts/${c.concertId}/line`);
        return;
      }
      const next = await join(c);
      if (next) route(next);
    });

  return (
    <section>
      <Heading>Pick a concert</Heading>
      {list?.length === 0 && <p>No concerts are on sale yet.</p>}
      <ul class="cards">
        {list?.map((c) => {
          const sale = saleStatus(c.saleOpensAt ? timestampMs(c.saleOpensAt) : undefined, now);
          const prices = formatPrices(c.priceFrom, c.priceTo);
          const inLine = session.admission?.concertId === c.concertId;
          return (
            <li key={c.concertId}>
              <h2 id={`concert-${c.concertId}`}>{c.title}</h2>
              <p>{c.venue}</p>
              <p>{formatDates(msOf(c.firstStartsAt), msOf(c.lastStartsAt), c.upcomingDates)}</p>
              {prices && <p>{prices}</p>}
              <p class={sale.open ? "sale sale--open" : "sale"}>{sale.text}</p>
              <button
                type="button"
                class="primary"
                aria-describedby={`concert-${c.concertId}`}
                onClick={() => enter(c)}
                disabled={busy || c.upcomingDates === 0}
              >
                {inLine ? "Back to your place" : "Join the waiting room"}
              </button>
              {door?.concertId === c.concertId && <DoorNotice door={door} now={now} stop={stop} />}
            </li>
          );
        })}
      </ul>
    </section>
  );
}
