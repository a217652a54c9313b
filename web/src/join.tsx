// Joining a concert's waiting room: one place the concert list and the waiting room share.
import { as, queue } from "./api";
import type { Concert } from "./gen/concert/catalog/v1/catalog_pb";
import { TokenState } from "./gen/concert/queue/v1/queue_pb";
import { credentialOf } from "./logic";
import type { Action } from "./session";

/** Takes a place in `concert`'s waiting room and keeps it in the session; the URL to go to. */
export async function join(access: string, concert: Concert, dispatch: (a: Action) => void): Promise<string> {
  const joined = await queue.issueToken({ concertId: concert.concertId }, as(access));
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
