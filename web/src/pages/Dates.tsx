import { useLocation, useRoute } from "preact-iso";
import { useEffect, useState } from "preact/hooks";
import { as, catalog } from "../api";
import type { Schedule } from "../gen/concert/catalog/v1/catalog_pb";
import { formatWhen, msOf } from "../logic";
import { rememberStart } from "../schedules";
import { Heading, useShop } from "../shop";

/** The concert's dates with free seats (needs the admission). */
export function Dates() {
  const { params } = useRoute();
  const concertId = params.concertId ?? "";
  const { access, session, run, busy } = useShop();
  const { route } = useLocation();
  const admission = session.admission?.concertId === concertId ? session.admission : undefined;
  const credential = admission?.credential;
  const [dates, setDates] = useState<Schedule[]>();

  useEffect(() => {
    // Not admitted in this tab (yet, or any more): the waiting room says what to do.
    if (!credential) {
      route(`/concerts/${concertId}/line`, true);
      return;
    }
    void run(async () => {
      const r = await catalog.listAvailableDates({ concertId }, as(access, credential));
      for (const d of r.schedules) rememberStart(d.scheduleId, msOf(d.startsAt));
      setDates(r.schedules);
    });
  }, [access, concertId, credential, route, run]);

  return (
    <section>
      <Heading>Choose a date for {admission?.title ?? "the concert"}</Heading>
      {dates?.length === 0 && <p>No dates with free seats are left.</p>}
      <ul class="cards">
        {dates?.map((d) => {
          const starts = msOf(d.startsAt);
          return (
            <li key={d.scheduleId}>
              <a
                class={`date${busy || d.availableSeats === 0 ? " date--off" : ""}`}
                href={`/concerts/${concertId}/dates/${d.scheduleId}`}
                aria-disabled={d.availableSeats === 0}
              >
                {starts ? formatWhen(starts) : "Date to be announced"} — {d.availableSeats} of {d.totalSeats} seats free
              </a>
            </li>
          );
        })}
      </ul>
    </section>
  );
}
