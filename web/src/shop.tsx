// What every step shares: the signed-in user's access token, this tab's session (a reducer
// kept in sessionStorage), one busy flag and error line, and a clock that ticks each second.
import { ConnectError } from "@connectrpc/connect";
import { createContext } from "preact";
import { useContext, useEffect, useRef } from "preact/hooks";
import { describeError, reasonOf } from "./logic";
import type { Action, Session } from "./session";

export type Shop = {
  access: string;
  session: Session;
  dispatch: (action: Action) => void;
  /** Runs a step's call: busy meanwhile, its failure said in words (a spent or expired turn
   * also ends the tab's admission). */
  run: (action: () => Promise<void>) => Promise<void>;
  busy: boolean;
  /** Shows `message` as the page's error line (undefined clears it). */
  fail: (message: string | undefined) => void;
  /** This browser's clock, ticking each second. */
  now: number;
  /** The server's clock now (countdowns of holds use it). */
  serverNow: number;
};

export const ShopContext = createContext<Shop | undefined>(undefined);

export function useShop(): Shop {
  const shop = useContext(ShopContext);
  if (!shop) throw new Error("useShop outside the signed-in shop");
  return shop;
}

const TURN_ENDED = new Set(["TOKEN_EXPIRED", "TOKEN_USED", "TOKEN_UNKNOWN"]);

/** Whether `e` says the queue turn is over (join the waiting room again). */
export function turnEnded(e: unknown): boolean {
  return e instanceof ConnectError && TURN_ENDED.has(reasonOf(e) ?? "");
}

/** The `run` of a shop: `setBusy`, `fail` and `dispatch` from its owner. */
export function runner(
  setBusy: (b: boolean) => void,
  fail: (m: string | undefined) => void,
  dispatch: (a: Action) => void,
) {
  return async (action: () => Promise<void>) => {
    setBusy(true);
    fail(undefined);
    try {
      await action();
    } catch (e) {
      if (turnEnded(e)) dispatch({ type: "turnEnded" });
      fail(describeError(e));
    } finally {
      setBusy(false);
    }
  };
}

/** A step's heading, focused when the step opens, so that keyboard and screen-reader users
 * follow along. */
export function Heading({ children }: { children: preact.ComponentChildren }) {
  const ref = useRef<HTMLHeadingElement>(null);
  useEffect(() => ref.current?.focus(), []);
  return (
    <h1 ref={ref} tabIndex={-1}>
      {children}
    </h1>
  );
}
