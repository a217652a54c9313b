// Browser tests of the booking page in real headless Chromium (playwright-core, Debian's
// /usr/bin/chromium), against the real services scripts/test-web.sh started, through the page
// server's grpc-web proxy. Each scenario's steps are screenshotted into e2e/screenshots/ and
// scanned with axe (no serious or critical violation allowed).
//
// Env: PAGE_URL (the page), TOKEN_<NAME> (an access token per user, from concertctl token),
// CHROMIUM (default /usr/bin/chromium). Exits 1 on the first failed check.
import { mkdirSync, rmSync } from "node:fs";
import { AxeBuilder } from "@axe-core/playwright";
import { chromium } from "playwright-core";

const PAGE_URL = process.env.PAGE_URL ?? "http://127.0.0.1:8090/";
const SHOTS = new URL("./screenshots/", import.meta.url).pathname;
rmSync(SHOTS, { recursive: true, force: true });
mkdirSync(SHOTS, { recursive: true });
const token = (user) => {
  const t = process.env[`TOKEN_${user.toUpperCase()}`];
  if (!t) throw new Error(`TOKEN_${user.toUpperCase()} is not set`);
  return t;
};

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run"],
});
const failures = [];
let shot = 0;

/** A signed-in user's page at a phone's width (the sign-in link carries the dev token). */
async function open(user, viewport = { width: 390, height: 844 }) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  page.setDefaultTimeout(20_000);
  await page.goto(`${PAGE_URL}#access_token=${token(user)}`);
  await page.getByRole("heading", { name: "Pick a concert" }).waitFor();
  return page;
}

/** Screenshot and accessibility scan of the current step. */
async function step(page, name) {
  shot += 1;
  await page.screenshot({ path: `${SHOTS}${String(shot).padStart(2, "0")}-${name}.png`, fullPage: true });
  const scan = await new AxeBuilder({ page }).analyze();
  const bad = scan.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  if (bad.length) throw new Error(`${name}: accessibility: ${bad.map((v) => `${v.id} (${v.nodes.length})`).join(", ")}`);
}

async function expectText(page, text, what) {
  try {
    await page.getByText(text).first().waitFor({ timeout: 20_000 });
  } catch {
    throw new Error(`${what}: expected to see ${text}; the page says: ${(await page.locator("main").innerText()).slice(0, 400)}`);
  }
}

/** Joins the first concert's waiting room and goes on to the seat map of its first date. */
async function toSeatMap(page, shots) {
  await page.getByRole("button", { name: /Join the waiting room for Aurora/ }).click();
  if (shots) await step(page, "waiting-room");
  await page.getByRole("heading", { name: /Choose a date/ }).waitFor();
  if (shots) await step(page, "dates");
  await page.getByRole("button", { name: /seats free/ }).first().click();
  await page.getByRole("heading", { name: /Choose a seat/ }).waitFor();
}

async function scenario(name, body) {
  const started = Date.now();
  try {
    await body();
    console.log(`ok   ${name} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
  } catch (e) {
    failures.push(name);
    console.log(`FAIL ${name}: ${e.message}`);
  }
}

await scenario("the whole flow: short of money, topped up, paid", async () => {
  const page = await open("ada");
  await step(page, "concerts");
  await toSeatMap(page, true);
  // Keyboard: focus the map, move with the arrows, hold with Enter.
  await page.getByRole("button", { name: /^Seat 1,/ }).focus();
  for (let i = 0; i < 11; i++) await page.keyboard.press("ArrowRight");
  await step(page, "seat-map");
  await page.keyboard.press("Enter");
  await page.getByRole("heading", { name: "Seat 12 is held for you" }).waitFor();
  await expectText(page, /Pay within \d:\d\d/, "countdown");
  await step(page, "hold");
  // A new user's wallet is empty: the page offers the top-up and holds Pay back.
  await expectText(page, "Your wallet is short by 120,000 won", "short of money");
  if (await page.getByRole("button", { name: /^Pay / }).isEnabled()) throw new Error("Pay is offered while the wallet is short");
  await step(page, "short-of-money");
  await page.getByRole("button", { name: /^Top up 120,000 won/ }).click();
  await expectText(page, "your balance 120,000 won", "topped up");
  await page.getByRole("button", { name: /^Pay / }).click();
  await page.getByRole("heading", { name: "You have a ticket!" }).waitFor();
  await expectText(page, "120,000 won", "confirmation amount");
  await step(page, "confirmation");
  await page.getByRole("button", { name: "See my tickets" }).click();
  await page.getByRole("heading", { name: "My reservations and payments" }).waitFor();
  await expectText(page, /Seat 12 · 120,000 won · confirmed/, "my reservations");
  await step(page, "my-tickets");
  await page.context().close();
});

await scenario("two buyers race for one seat: the loser is told to pick another", async () => {
  const [bea, cal] = [await open("bea", { width: 1280, height: 900 }), await open("cal")];
  await toSeatMap(bea, false);
  await toSeatMap(cal, false);
  // Both see seat 30 free; Bea takes it first; Cal's map is now stale.
  await bea.getByRole("button", { name: /^Seat 30,.*available/ }).click();
  await bea.getByRole("heading", { name: "Seat 30 is held for you" }).waitFor();
  await cal.getByRole("button", { name: /^Seat 30,.*available/ }).click();
  await expectText(cal, "Someone else just took this seat. Please pick another one.", "race loser");
  // The map refreshed: seat 30 is now shown on hold, not offered.
  await cal.getByRole("button", { name: /^Seat 30,.*on hold/ }).waitFor();
  await step(cal, "seat-taken");
  await bea.context().close();
  await cal.context().close();
});

await scenario("a payment refused for balance, then topped up and paid", async () => {
  // Eve books two concerts in two tabs with one top-up: the first payment spends the money
  // the second tab saw, so the wallet refuses the second.
  const [first, second] = [await open("eve"), await open("eve")];
  await first.getByRole("button", { name: /Join the waiting room for Neon/ }).click();
  await first.getByRole("heading", { name: /Choose a date/ }).waitFor();
  await first.getByRole("button", { name: /seats free/ }).first().click();
  await first.getByRole("button", { name: /^Seat 1,.*available/ }).click();
  await first.getByRole("heading", { name: "Seat 1 is held for you" }).waitFor();
  await first.getByRole("button", { name: /^Top up 150,000 won/ }).click();
  await expectText(first, "your balance 150,000 won", "topped up");
  await toSeatMap(second, false);
  await second.getByRole("button", { name: /^Seat 21,.*available/ }).click();
  await second.getByRole("heading", { name: "Seat 21 is held for you" }).waitFor();
  await expectText(second, "your balance 150,000 won", "second tab's balance");
  await first.getByRole("button", { name: /^Pay / }).click();
  await first.getByRole("heading", { name: "You have a ticket!" }).waitFor();
  await second.getByRole("button", { name: /^Pay / }).click();
  await expectText(second, "Your wallet balance was too low, so the seat was released", "refused for balance");
  await step(second, "refused-for-balance");
  await second.getByRole("button", { name: /^Seat 21,.*available/ }).click();
  await second.getByRole("heading", { name: "Seat 21 is held for you" }).waitFor();
  await second.getByRole("button", { name: /^Top up 120,000 won/ }).click();
  await second.getByRole("button", { name: /^Pay / }).click();
  await second.getByRole("heading", { name: "You have a ticket!" }).waitFor();
  await first.context().close();
  await second.context().close();
});

await scenario("a hold that runs out while the page counts down", async () => {
  const page = await open("dan");
  await toSeatMap(page, false);
  await page.getByRole("button", { name: /^Seat 40,.*available/ }).click();
  await page.getByRole("heading", { name: "Seat 40 is held for you" }).waitFor();
  const ttl = Number(process.env.HOLD_TTL_SECS ?? 15);
  await page.getByText("Your hold on this seat has expired").waitFor({ timeout: (ttl + 10) * 1000 });
  await page.getByRole("heading", { name: /Choose a seat/ }).waitFor();
  await step(page, "hold-expired");
  await page.context().close();
});

await browser.close();
console.log(failures.length ? `${failures.length} browser scenario(s) failed` : `browser scenarios passed; screenshots in ${SHOTS}`);
process.exit(failures.length ? 1 : 0);
