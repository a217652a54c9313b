import { useLocation } from "preact-iso";
import { formatCountdown, formatWon } from "../logic";
import { basket, firstExpiry, total } from "../session";
import { useShop } from "../shop";

/** While shopping, the basket's seats and the time left on the first hold, always in view. */
export function HoldBar() {
  const { session, serverNow } = useShop();
  const { path } = useLocation();
  const holds = basket(session);
  const ends = firstExpiry(holds);
  if (holds.length === 0 || ends === undefined) return null;
  return (
    <div class="holdbar">
      <p role="timer" aria-live="off" title="Your seats are held for you until the time runs out">
        {holds.length === 1 ? "1 seat" : `${holds.length} seats`} · {formatWon(total(holds))} ·{" "}
        <strong>{formatCountdown(ends, serverNow)}</strong> left
      </p>
      {path !== "/checkout" && (
        <a class="button primary" href="/checkout">
          Check out
        </a>
      )}
    </div>
  );
}
