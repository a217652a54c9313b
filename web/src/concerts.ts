// The concert list, read once per page load and shared by the steps that name a concert.
import { useEffect, useState } from "preact/hooks";
import { as, catalog } from "./api";
import type { Concert } from "./gen/concert/catalog/v1/catalog_pb";

let listed: Promise<Concert[]> | undefined;

/** Every concert (ListConcerts, one page of 100), fetched once; `fresh` fetches again. */
export function concerts(access: string, fresh = false): Promise<Concert[]> {
  if (!listed || fresh) {
    listed = catalog.listConcerts({ pageSize: 100 }, as(access)).then((r) => r.concerts);
    listed.catch(() => (listed = undefined));
  }
  return listed;
}

/** One concert by id, once the list has it (undefined before, or when unknown). */
export function useConcert(access: string, concertId: string): Concert | undefined {
  const [concert, setConcert] = useState<Concert>();
  useEffect(() => {
    let live = true;
    concerts(access)
      .then((all) => live && setConcert(all.find((c) => c.concertId === concertId)))
      .catch(() => undefined);
    return () => {
      live = false;
    };
  }, [access, concertId]);
  return concert;
}
