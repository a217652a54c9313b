import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { type Concert, ConcertSchema } from "./gen/concert/catalog/v1/catalog_pb";
import { IssueTokenResponseSchema, TokenState } from "./gen/concert/queue/v1/queue_pb";
import { ErrorInfoSchema, RetryInfoSchema } from "./gen/google/rpc/error_details_pb";

// The queue client only: what the page sends and is answered is what is under test.
const issueToken = vi.fn();
vi.mock("./api", () => ({ as: () => ({}), queue: { issueToken: (...args: unknown[]) => issueToken(...args) } }));
const { join, MIN_RETRY_PAUSE_MS } = await import("./join");

const concert: Concert = create(ConcertSchema, { concertId: "c-1", title: "Aurora", venue: "Hall" });
const waiting = create(IssueTokenResponseSchema, {
  status: { token: "t-1", state: TokenState.WAITING, position: 7n, concertId: "c-1" },
});
/** RESOURCE_EXHAUSTED as the queue sends it past a join limit, naming a pause. */
const busy = (ms: number) =>
  new ConnectError("too many IssueToken calls", Code.ResourceExhausted, undefined, [
    { desc: ErrorInfoSchema, value: { reason: "RATE_LIMITED", domain: "concert.example.com" } },
    {
      desc: RetryInfoSchema,
      value: { retryDelay: { seconds: BigInt(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1_000_000 } },
    },
  ]);

describe("joining at a crowded door", () => {
  beforeEach(() => {
    vi.useFakeTimers();
    issueToken.mockReset();
  });
  afterEach(() => vi.useRealTimers());

  it("waits for each pause the queue names, says when, and joins by itself", async () => {
    issueToken.mockRejectedValueOnce(busy(3_000)).mockRejectedValueOnce(busy(1_500)).mockResolvedValueOnce(waiting);
    const told: (number | undefined)[] = [];
    const dispatch = vi.fn();
    const joined = join("access", concert, dispatch, (at) => told.push(at));

    await vi.advanceTimersByTimeAsync(2_999);
    expect(issueToken).toHaveBeenCalledTimes(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(issueToken).toHaveBeenCalledTimes(2);
    await vi.advanceTimersByTimeAsync(1_500);
    await expect(joined).resolves.toBe("/concerts/c-1/line");
    expect(issueToken).toHaveBeenCalledTimes(3);
    // Two waits announced (each as a time 3 s and 1.5 s ahead), then none.
    expect(told).toHaveLength(3);
    expect(told[2]).toBeUndefined();
    expect(dispatch).toHaveBeenCalledWith(expect.objectContaining({ type: "joined" }));
  });

  it("never tries again sooner than the floor, whatever the pause says", async () => {
    issueToken.mockRejectedValueOnce(busy(0)).mockResolvedValueOnce(waiting);
    const joined = join("access", concert, vi.fn());
    await vi.advanceTimersByTimeAsync(MIN_RETRY_PAUSE_MS - 1);
    expect(issueToken).toHaveBeenCalledTimes(1);
    await vi.advanceTimersByTimeAsync(1);
    await expect(joined).resolves.toBe("/concerts/c-1/line");
    expect(issueToken).toHaveBeenCalledTimes(2);
  });

  it("gives up at once on a refusal that is not about load, and when the buyer stops", async () => {
    const denied = new ConnectError("no", Code.PermissionDenied);
    issueToken.mockRejectedValueOnce(denied);
    const told: (number | undefined)[] = [];
    await expect(join("access", concert, vi.fn(), (at) => told.push(at))).rejects.toBe(denied);
    expect(told).toEqual([undefined]);

    issueToken.mockReset();
    issueToken.mockRejectedValue(busy(10_000));
    const stop = new AbortController();
    const joined = join("access", concert, vi.fn(), undefined, stop.signal);
    const settled = expect(joined).rejects.toBeInstanceOf(ConnectError);
    await vi.advanceTimersByTimeAsync(100);
    stop.abort();
    await vi.advanceTimersByTimeAsync(0);
    await settled;
    expect(issueToken).toHaveBeenCalledTimes(1);
  });
});
