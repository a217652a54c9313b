// The services, called with grpc-web through the page's own origin (Envoy in production, the
// dev/preview server's proxy in development), with clients generated from proto/.
import { createClient, type Client } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { CatalogService } from "./gen/concert/catalog/v1/catalog_pb";
import { QueueService } from "./gen/concert/queue/v1/queue_pb";
import { ReservationService } from "./gen/concert/reservation/v1/reservation_pb";
import { WalletService } from "./gen/concert/wallet/v1/wallet_pb";

const transport = createGrpcWebTransport({ baseUrl: typeof location === "undefined" ? "" : location.origin });

export const queue: Client<typeof QueueService> = createClient(QueueService, transport);
export const catalog: Client<typeof CatalogService> = createClient(CatalogService, transport);
export const reservation: Client<typeof ReservationService> = createClient(ReservationService, transport);
export const wallet: Client<typeof WalletService> = createClient(WalletService, transport);

/** Call options of a signed-in user: the access token, and the queue token once admitted. */
export function as(accessToken: string, queueToken?: string, signal?: AbortSignal) {
  const headers: Record<string, string> = { authorization: `Bearer ${accessToken}` };
  if (queueToken) headers["x-queue-token"] = queueToken;
  return { headers, signal, timeoutMs: 15_000 };
}

/** The `sub` of an access token, to greet the user (the services verify it; this does not). */
export function subjectOf(accessToken: string): string | undefined {
  try {
    const payload = accessToken.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(payload)).sub;
  } catch {
    return undefined;
  }
}
