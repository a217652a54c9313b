// When a date starts, for the steps after the date list (the seat map's heading, the order
// summary, the confirmation): remembered from the list, or asked again after a reload.
import { as, catalog } from "./api";
import { msOf } from "./logic";

const starts = new Map<string, number>();

export function rememberStart(scheduleId: string, startsAt: number | undefined): void {
  if (startsAt !== undefined) starts.set(scheduleId, startsAt);
}

/** When `scheduleId` starts (ms), from memory or ListAvailableDates of its concert. */
export async function startOf(access: string, credential: string, concertId: string, scheduleId: string): Promise<number | undefined> {
  const known = starts.get(scheduleId);
  if (known !== undefined) return known;
  const r = await catalog.listAvailableDates({ concertId }, as(access, credential));
  for (const d of r.schedules) rememberStart(d.scheduleId, msOf(d.startsAt));
  return starts.get(scheduleId);
}
