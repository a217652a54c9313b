import { useRef, useState } from "preact/hooks";
import type { Seat } from "../gen/concert/catalog/v1/catalog_pb";
import { formatWon, legend, moveFocus, seatView } from "../logic";

/** The 50 seats of a date, 10 to a row: arrow keys move, Enter or a click picks a free seat
 * or releases one of `mine`. Status is told by colour, by a mark and in the label. */
export function SeatMap({
  seats,
  mine,
  onPick,
  disabled,
}: {
  seats: Seat[];
  mine: Set<number>;
  onPick: (s: Seat, isMine: boolean) => void;
  disabled: boolean;
}) {
  const [focus, setFocus] = useState(1);
  const buttons = useRef<Map<number, HTMLButtonElement>>(new Map());
  const onKey = (e: KeyboardEvent, n: number) => {
    const next = moveFocus(n, e.key);
    if (next !== n) {
      e.preventDefault();
      setFocus(next);
      buttons.current.get(next)?.focus();
    }
  };
  return (
    <>
      <div class="stage" aria-hidden="true">
        Stage
      </div>
      <div class="seatmap" role="group" aria-label="Seat map: arrow keys move, Enter holds or releases the seat">
        {seats.map((s) => {
          const isMine = mine.has(s.seatNumber);
          const v = seatView(s, isMine);
          return (
            <button
              key={s.seatNumber}
              type="button"
              ref={(el) => {
                if (el) buttons.current.set(s.seatNumber, el);
              }}
              class={v.className}
              aria-label={v.label}
              title={v.label}
              aria-disabled={!v.selectable || disabled}
              tabIndex={s.seatNumber === focus ? 0 : -1}
              onKeyDown={(e) => onKey(e, s.seatNumber)}
              onClick={() => v.selectable && !disabled && onPick(s, isMine)}
            >
              <span aria-hidden="true">
                {s.seatNumber}
                {v.mark && <span class="mark">{v.mark}</span>}
              </span>
            </button>
          );
        })}
      </div>
      <ul class="legend" aria-label="Legend">
        {legend(seats).map((g) => (
          <li key={g.grade}>
            <span class={`swatch grade--${g.grade.toLowerCase()}`} aria-hidden="true" /> {g.grade}: {formatWon(g.price)}
          </li>
        ))}
        <li>
          <span class="swatch seat--available" aria-hidden="true" /> free
        </li>
        <li>
          <span class="swatch seat--mine" aria-hidden="true">
            ★
          </span>{" "}
          yours
        </li>
        <li>
          <span class="swatch seat--on-hold" aria-hidden="true">
            …
          </span>{" "}
          on hold
        </li>
        <li>
          <span class="swatch seat--sold" aria-hidden="true">
            ✕
          </span>{" "}
          sold
        </li>
      </ul>
    </>
  );
}
