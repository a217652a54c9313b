// Browser tests of the booking page in real headless Chromium (playwright-core, Debian's
// /usr/bin/chromium), against the real services scripts/test-web.sh started, through the page
// server's grpc-web proxy. Each scenario's steps are screenshotted into e2e/screenshots/ and
// scanned with axe (no serious or critical violation allowed).
//
// Env: PAGE_URL (the page), TOKEN_<NAME> (an access token per user, from concertctl token),
// HOLD_TTL_SECS (the suite's hold length), CONCERTCTL (the operator's tool, to change an
// admission policy), CHROMIUM (default /usr/bin/chromium). Exits 1 when a scenario failed.
import { execFileSync } from "node:child_process";
import { mkdirSync, rmSync } from "node:fs";
import { AxeBuilder } from "@axe-core/playwright";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import { chromium } from "playwright-core";

const PAGE_URL = process.env.PAGE_URL ?? "http://127.0.0.1:8090/";
const TTL = Number(process.env.HOLD_TTL_SECS ?? 30);
const SHOTS = new URL("./screenshots/", import.meta.url).pathname;
rmSync(SHOTS, { recursive: true, force: true });
mkdirSync(SHOTS, { recursive: true });
const token = (user) => {
  const t = process.env[`TOKEN_${user.toUpperCase()}`];
  if (!t) throw new Error(`TOKEN_${user.toUpperCase()} is not set`);
  return t;
};
const PHONE = { width: 390, height: 844 };
const DESKTOP = { width: 1280, height: 800 };

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run"],
});
const failures = [];
let shot = 0;

/** A signed-in user's page (the sign-in link carries the dev token), at a phone's width
 * unless told otherwise. */
async function open(user, viewport = PHONE) {
  const context = await browser.newContext({ viewport, locale: "en-US" });
  const page = await context.newPage();
  page.setDefaultTimeout(20_000);
  await page.goto(`${PAGE_URL}#access_token=${token(user)}`);
  await page.getByRole("heading", { name: "Pick a concert" }).waitFor();
  return page;
}

/** Screenshot and accessibility scan of the current step; at a phone's width, also that the
 * page does not scroll sideways and the header stays one compact row. */
async function step(page, name) {
  shot += 1;
  await page.screenshot({ path: `${SHOTS}${String(shot).padStart(2, "0")}-${name}.png`, fullPage: true });
  const scan = await new AxeBuilder({ page }).analyze();
  const bad = scan.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  if (bad.length) throw new Error(`${name}: accessibility: ${bad.map((v) => `${v.id} (${v.nodes.length})`).join(", ")}`);
  const layout = await page.evaluate(() => ({
    overflow: document.documentElement.scrollWidth - window.innerWidth,
    header: document.querySelector("header")?.getBoundingClientRect().height ?? 0,
  }));
  if (layout.overflow > 0) throw new Error(`${name}: the page scrolls sideways by ${layout.overflow} px`);
  if (layout.header > 64) throw new Error(`${name}: the header is ${layout.header} px tall`);
}

/** The start of what the page shows, for a failure's message. */
const pageSays = async (page) => (await page.locator("main").innerText()).slice(0, 500);

async function expectText(page, text, what) {
  try {
    await page.getByText(text).first().waitFor({ timeout: 20_000 });
  } catch {
    throw new Error(`${what}: expected to see ${text}; the page says: ${await pageSays(page)}`);
  }
}

/** The operator's tool (`concertctl`), its output as text. */
const ctl = (...args) => execFileSync(process.env.CONCERTCTL ?? "concertctl", args, { encoding: "utf8" });

/** The id of the concert whose title contains `title` (`concertctl concerts`). */
function concertIdOf(title) {
  const id = ctl("concerts").split("\n").find((l) => l.includes(title))?.split("\t")[0];
  if (!id) throw new Error(`no ${title} concert`);
  return id;
}

const heading = (page, name) => page.getByRole("heading", { name, level: 1 }).waitFor();
const seat = (page, n, state = "") => page.getByRole("button", { name: new RegExp(`^Seat ${n},.*${state}`) });

/** The concert card titled `title`. */
const card = (page, title) => page.getByRole("listitem").filter({ has: page.getByRole("heading", { name: title }) });

/** Joins `concert`'s waiting room and goes on to the seat map of its date number `date`. */
async function toSeatMap(page, { concert = "Aurora", date = 0, shots = false } = {}) {
  await card(page, new RegExp(concert)).getByRole("button", { name: /Join the waiting room|Back to your place/ }).click();
  // (Admitted at once here: the waiting room has a scenario of its own.)
  await heading(page, /Choose a date/);
  if (shots) await step(page, "dates");
  await page.getByRole("link", { name: /seats free/ }).nth(date).click();
  await heading(page, /Choose seats/);
  await page.getByRole("button", { name: /^Seat 1,/ }).waitFor();
}

/** The hold bar's countdown in seconds. */
async function countdown(page) {
  const text = await page.getByRole("timer").first().innerText();
  const m = text.match(/(\d+):(\d\d) left/);
  if (!m) throw new Error(`no countdown in ${JSON.stringify(text)}`);
  return Number(m[1]) * 60 + Number(m[2]);
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

await scenario("one seat at phone width: short of money, topped up, paid, in my tickets with its date", async () => {
  const page = await open("ada");
  await expectText(page, "On sale now", "sale status");
  await expectText(page, /from|won/, "price range");
  await step(page, "concerts");
  await toSeatMap(page, { shots: true });
  // Keyboard: focus the map, move with the arrows, hold with Enter.
  await seat(page, 1).focus();
  for (let i = 0; i < 11; i++) await page.keyboard.press("ArrowRight");
  await step(page, "seat-map");
  await page.keyboard.press("Enter");
  await seat(page, 12, "held by you").waitFor();
  const left = await countdown(page);
  if (left > TTL || left < TTL - 3) throw new Error(`a ${TTL} s hold first counts down from ${left} s`);
  await step(page, "held");
  await page.getByRole("link", { name: "Check out 1 seat" }).click();
  await heading(page, "Check out");
  // A new user's wallet is empty: the page offers the top-up and holds Pay back.
  await expectText(page, "Your wallet is short by 120,000 won", "short of money");
  if (await page.getByRole("button", { name: /^Pay / }).isEnabled()) throw new Error("Pay is offered while the wallet is short");
  await step(page, "checkout-short");
  await page.getByRole("button", { name: /^Top up 120,000 won/ }).click();
  await expectText(page, "Your balance 120,000 won", "topped up");
  await page.getByRole("button", { name: "Pay 120,000 won" }).click();
  await heading(page, "You have a ticket!");
  await expectText(page, "Aurora Symphony Live, Seoul Arts Center", "confirmation concert");
  await step(page, "confirmation");
  await page.getByRole("link", { name: "See my tickets" }).click();
  await heading(page, "My tickets");
  await expectText(page, /Seat 12 · R · 120,000 won · confirmed/, "my ticket");
  await expectText(page, /Seoul Arts Center · (Mon|Tue|Wed|Thu|Fri|Sat|Sun), /, "venue and weekday");
  await expectText(page, "You hold no seats right now.", "empty state in words");
  await expectText(page, /120,000 won · 1 seat · paid/, "the payment");
  await step(page, "my-tickets");
  await page.context().close();
});

await scenario("another buyer's hold reaches an open map within a second; a lost race never shows the seat free", async () => {
  const [bea, cal] = [await open("bea", DESKTOP), await open("cal")];
  await toSeatMap(bea);
  await toSeatMap(cal);
  await expectText(cal, "Live: seats update as others buy.", "the map is on the stream");
  await seat(cal, 30, "available").waitFor();
  const before = Date.now();
  await seat(bea, 30, "available").click();
  await seat(bea, 30, "held by you").waitFor();
  // Cal did nothing: the stream brought Bea's hold.
  await seat(cal, 30, "on hold").waitFor({ timeout: 5_000 });
  const seen = Date.now() - before;
  console.log(`     another buyer's hold on the open map after ${seen} ms (hold call included)`);
  if (seen > 1_500) throw new Error(`the hold reached the open map after ${seen} ms`);
  await step(cal, "live-map");
  // Both click seat 31 at once: one wins, the other is told and never sees it free again.
  await Promise.all([seat(bea, 31, "available").click(), seat(cal, 31, "available").click()]);
  const beaWon = await seat(bea, 31, "held by you").waitFor({ timeout: 5_000 }).then(() => true, () => false);
  const [winner, loser] = beaWon ? [bea, cal] : [cal, bea];
  await seat(winner, 31, "held by you").waitFor();
  await expectText(loser, "Someone else just took this seat. Please pick another one.", "race loser");
  await seat(loser, 31, "on hold").waitFor({ timeout: 1_000 });
  await step(loser, "seat-taken");
  await bea.context().close();
  await cal.context().close();
});

await scenario("two buyers ask for the best R seat at once: one holds the front-most free, the other the next", async () => {
  const [oli, pam] = [await open("oli", DESKTOP), await open("pam")];
  // A date no other scenario touches, so its front-most free R seat is 11.
  await toSeatMap(oli, { concert: "Neon", date: 1 });
  await toSeatMap(pam, { concert: "Neon", date: 1 });
  const best = (page) => page.getByRole("button", { name: "Best R · 120,000 won" });
  await best(oli).waitFor();
  await step(oli, "best-available-offered");
  await Promise.all([best(oli).click(), best(pam).click()]);
  const mine = async (page) => {
    const held = page.getByRole("button", { name: /^Seat \d+, R, 120,000 won, held by you/ });
    await held.first().waitFor({ timeout: 10_000 });
    return Number((await held.first().getAttribute("aria-label")).match(/^Seat (\d+)/)[1]);
  };
  const [oliSeat, pamSeat] = [await mine(oli), await mine(pam)];
  console.log(`     best R seats held: ${oliSeat} and ${pamSeat}`);
  const both = [oliSeat, pamSeat].sort((a, b) => a - b);
  if (both[0] !== 11 || both[1] !== 12) throw new Error(`the two best R seats held were ${both}, not 11 and 12`);
  // Each sees the other's seat on hold on the live map.
  await seat(oli, pamSeat, "on hold").waitFor({ timeout: 5_000 });
  await seat(pam, oliSeat, "on hold").waitFor({ timeout: 5_000 });
  await step(pam, "best-available-held");
  await oli.context().close();
  await pam.context().close();
});

await scenario("a reload mid-hold resumes the hold with its countdown, a second tab shows it, and it is paid", async () => {
  const page = await open("fay");
  await toSeatMap(page, { date: 1 });
  await seat(page, 5, "available").click();
  await seat(page, 5, "held by you").waitFor();
  const url = page.url();
  await page.reload();
  await heading(page, /Choose seats/);
  if (page.url() !== url) throw new Error(`the reload moved from ${url} to ${page.url()}`);
  await seat(page, 5, "held by you").waitFor();
  const left = await countdown(page);
  if (left > TTL || left < 1) throw new Error(`after the reload the hold counts down from ${left} s`);
  await expectText(page, /Seat 5 · VIP · 150,000 won/, "the basket after a reload");
  await step(page, "reloaded-hold");
  // A second tab of the same user: the hold is listed live, with Release.
  const other = await page.context().newPage();
  // (A new tab has no session of its own: it signs in with the link, as a new tab would
  // through the OIDC provider's session.)
  await other.goto(`${PAGE_URL}tickets#access_token=${token("fay")}`);
  await heading(other, "My tickets");
  await expectText(other, /Seat 5 · VIP · 150,000 won · held/, "the hold in a second tab");
  await other.getByRole("button", { name: "Release seat 5" }).waitFor();
  await step(other, "second-tab-hold");
  await other.close();
  await page.getByRole("link", { name: /Check out/ }).first().click();
  await page.getByRole("button", { name: /^Top up 150,000 won/ }).click();
  await page.getByRole("button", { name: "Pay 150,000 won" }).click();
  await heading(page, "You have a ticket!");
  // The confirmation survives a reload too.
  await page.reload();
  await heading(page, "You have a ticket!");
  await page.context().close();
});

await scenario("Back and Forward move between the steps, and a step's URL opens it", async () => {
  const page = await open("gus");
  await toSeatMap(page, { date: 2 });
  await page.goBack();
  await heading(page, /Choose a date/);
  await page.goBack();
  await heading(page, "Pick a concert");
  await page.goForward();
  await heading(page, /Choose a date/);
  await page.goForward();
  await heading(page, /Choose seats/);
  await page.getByRole("link", { name: "My tickets" }).click();
  await heading(page, "My tickets");
  await page.goBack();
  await heading(page, /Choose seats/);
  await page.context().close();
});

await scenario("three seats in one order: the summary's total, one payment, three tickets", async () => {
  const page = await open("hal", DESKTOP);
  await toSeatMap(page, { date: 2 });
  for (const n of [33, 34, 35]) {
    await seat(page, n, "available").click();
    await seat(page, n, "held by you").waitFor();
  }
  // Picking one of mine again releases it; picking another holds it.
  await seat(page, 35, "held by you").click();
  await seat(page, 35, "available").waitFor();
  await seat(page, 36, "available").click();
  await seat(page, 36, "held by you").waitFor();
  await expectText(page, /3 seats · 270,000 won · \d:\d\d left/, "the hold bar");
  await page.getByRole("link", { name: "Check out 3 seats" }).click();
  await heading(page, "Check out");
  const rows = await page.getByRole("table", { name: "Your order" }).getByRole("row").count();
  if (rows !== 5) throw new Error(`the order summary has ${rows} rows, not header + 3 seats + total`);
  await expectText(page, "270,000 won", "the total");
  await page.getByRole("button", { name: /^Top up 270,000 won/ }).click();
  await step(page, "order-summary");
  await page.getByRole("button", { name: "Pay 270,000 won" }).click();
  await heading(page, "You have 3 tickets!");
  await step(page, "order-confirmation");
  await page.getByRole("link", { name: "See my tickets" }).click();
  await expectText(page, /270,000 won · 3 seats · paid/, "one payment for three seats");
  for (const n of [33, 34, 36]) await expectText(page, new RegExp(`Seat ${n} · S · 90,000 won · confirmed`), `seat ${n}`);
  await page.context().close();
});

await scenario("a ticket given back after a confirmation is refunded and leaves my tickets", async () => {
  const page = await open("ivy");
  await toSeatMap(page, { concert: "Neon", date: 2 });
  await seat(page, 45, "available").click();
  await page.getByRole("link", { name: /Check out/ }).first().click();
  await page.getByRole("button", { name: /^Top up 90,000 won/ }).click();
  await page.getByRole("button", { name: "Pay 90,000 won" }).click();
  await heading(page, "You have a ticket!");
  await page.getByRole("link", { name: "See my tickets" }).click();
  await page.getByRole("button", { name: "Give back seat 45" }).click();
  const confirm = page.getByRole("group", { name: "Give back seat 45?" });
  await confirm.waitFor();
  await step(page, "give-back-confirm");
  // Keeping the ticket changes nothing; giving it back refunds it.
  await confirm.getByRole("button", { name: "Keep the ticket" }).click();
  await page.getByRole("button", { name: "Give back seat 45" }).click();
  await page.getByRole("button", { name: "Give back and refund 90,000 won" }).click();
  await expectText(page, /Seat 45 · S · 90,000 won · given back, refunded/, "the given-back ticket");
  await expectText(page, "You have no tickets yet.", "no ticket left");
  await step(page, "given-back");
  await page.context().close();
});

await scenario("a payment refused for balance releases the seats, then a top-up pays", async () => {
  // Eve books two concerts in two tabs with one top-up: the first payment spends the money
  // the second tab saw, so the wallet refuses the second.
  const [first, second] = [await open("eve"), await open("eve")];
  await toSeatMap(first, { concert: "Neon" });
  await seat(first, 1, "available").click();
  await first.getByRole("link", { name: /Check out/ }).first().click();
  await first.getByRole("button", { name: /^Top up 150,000 won/ }).click();
  await expectText(first, "Your balance 150,000 won", "topped up");
  await toSeatMap(second, { concert: "Aurora", date: 1 });
  await seat(second, 21, "available").click();
  await second.getByRole("link", { name: /Check out/ }).first().click();
  await expectText(second, "Your balance 150,000 won", "second tab's balance");
  await first.getByRole("button", { name: "Pay 150,000 won" }).click();
  await heading(first, "You have a ticket!");
  await second.getByRole("button", { name: "Pay 120,000 won" }).click();
  await expectText(second, "Your wallet balance was too low, so the seat was released", "refused for balance");
  await expectText(second, "You have no seats on hold.", "the released seat left the basket");
  await step(second, "refused-for-balance");
  await second.getByRole("link", { name: "Choose seats" }).click();
  await second.getByRole("link", { name: /seats free/ }).nth(1).click();
  await seat(second, 21, "available").click();
  await second.getByRole("link", { name: /Check out/ }).first().click();
  await second.getByRole("button", { name: /^Top up 120,000 won/ }).click();
  await second.getByRole("button", { name: "Pay 120,000 won" }).click();
  await heading(second, "You have a ticket!");
  await first.context().close();
  await second.context().close();
});

await scenario("a hold that runs out while the page counts down", async () => {
  const page = await open("dan");
  await toSeatMap(page, { date: 2 });
  await seat(page, 40, "available").click();
  await seat(page, 40, "held by you").waitFor();
  await page.getByText("Your hold on seat 40 has expired").waitFor({ timeout: (TTL + 10) * 1000 });
  await seat(page, 40, "available").waitFor({ timeout: 3_000 });
  await step(page, "hold-expired");
  await page.context().close();
});

await scenario("the sign-in link signs in a tab where the page is already open", async () => {
  const context = await browser.newContext({ viewport: PHONE, locale: "en-US" });
  const page = await context.newPage();
  await page.goto(PAGE_URL);
  await heading(page, /Sign in/);
  await step(page, "sign-in");
  await page.goto(`${PAGE_URL}#access_token=${token("jon")}`);
  await heading(page, "Pick a concert");
  await context.close();
});

/** A buyer's other tabs joining `concertId`'s line back to back for `ms` (grpc-web through
 * the page's origin, four at a time), past this suite's QUEUE_JOIN_RATE_PER_USER of 1 a
 * second with a burst of 2 (scripts/test-web.sh): every join of `user` meanwhile, the page's
 * included, is refused for load with a RetryInfo, as a crowd past the join gate is. How
 * many of these joins were refused so. */
async function joinOverAndOver(user, concertId, ms) {
  // IssueTokenRequest { concert_id = 2 } (proto/concert/queue/v1/queue.proto; a wrong field
  // number is refused, USER_MISMATCH or INVALID_ARGUMENT, and the scenario fails), written
  // by protobuf-es's wire writer, in one grpc-web frame (flag 0, 4-byte length).
  const message = new BinaryWriter().tag(2, WireType.LengthDelimited).string(concertId).finish();
  const frame = new Uint8Array(5 + message.length);
  new DataView(frame.buffer).setUint32(1, message.length);
  frame.set(message, 5);
  const join = () =>
    fetch(new URL("concert.queue.v1.QueueService/IssueToken", PAGE_URL), {
      method: "POST",
      headers: { "content-type": "application/grpc-web+proto", "x-grpc-web": "1", authorization: `Bearer ${token(user)}` },
      body: frame,
    }).then(async (r) => {
      await r.arrayBuffer();
      return r.headers.get("grpc-status");
    });
  let refused = 0;
  const until = Date.now() + ms;
  const tab = async () => {
    while (Date.now() < until) if ((await join()) === "8") refused += 1;
  };
  await Promise.all([tab(), tab(), tab(), tab()]);
  return refused;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** `user` presses Join on Aurora's card (`concertId`) while their other tabs join over and over for
 * `ms` ([`joinOverAndOver`]), and sees the page wait at the door. The page, the joins it has
 * sent so far, and the other tabs' refused joins (once they stop).
 *
 * The other tabs keep the user's join allowance spent, but it refills once a second and the
 * page's join can land in the moment before a tab's next join takes it: then the page is
 * let in at once (its join is answered with the token the other tabs made). On a loaded
 * machine that happened (a tab's join takes longer, the moment is longer), so a press that
 * went straight through is tried again as another person, up to three people. */
async function refusedAtTheDoor(user, concertId, ms) {
  // Each person has an access token of their own (scripts/test-web.sh mints ray2, sue3, ...).
  for (const who of [user, `${user}2`, `${user}3`]) {
    const page = await open(who);
    const sent = { joins: 0 };
    page.on("request", (r) => r.url().endsWith("/IssueToken") && (sent.joins += 1));
    const others = joinOverAndOver(who, concertId, ms);
    await sleep(1_000);
    await card(page, /Aurora/).getByRole("button", { name: "Join the waiting room" }).click();
    const atTheDoor = page.getByText(/very busy at the door\. We will try again for you/).first();
    const through = page.getByRole("heading", { name: /Choose a date/, level: 1 });
    try {
      await atTheDoor.or(through).first().waitFor({ timeout: 20_000 });
    } catch {
      throw new Error(`the wait for the pause: the page says: ${await pageSays(page)}`);
    }
    if (await atTheDoor.isVisible()) return { page, sent, others };
    console.log(`     ${who}'s join landed between two of the other tabs' joins and went through; another person tries`);
    await others;
    await page.context().close();
  }
  throw new Error("three people's joins went through while their other tabs were being refused: the limit did not bite");
}

await scenario("a join refused for load waits for the pause the queue named, says so, and gets in by itself", async () => {
  const aurora = concertIdOf("Aurora");
  const ray = await refusedAtTheDoor("ray", aurora, 4_000);
  await step(ray.page, "door-crowded");
  const refused = await ray.others;
  if (refused < 20) throw new Error(`the other tabs' joins were refused ${refused} times: the limit did not bite`);
  // No second click: the page tries again after each pause and is let in once the other
  // tabs stop.
  await ray.page.getByRole("heading", { name: /Choose a date/, level: 1 }).waitFor({ timeout: 30_000 });
  if (ray.sent.joins < 2) throw new Error(`the page joined ${ray.sent.joins} time(s); it should have tried again`);
  if (await ray.page.getByText(/very busy at the door/).count()) throw new Error("the notice stayed after the join went through");

  // Another buyer stops waiting: the notice goes and the button is back; no join is sent after.
  const sue = await refusedAtTheDoor("sue", aurora, 3_000);
  await sue.page.getByRole("button", { name: "Stop trying" }).click();
  await card(sue.page, /Aurora/).getByRole("button", { name: "Join the waiting room", disabled: false }).waitFor();
  if (await sue.page.getByText(/very busy at the door/).count()) throw new Error("the notice stayed after Stop trying");
  await sue.others;
  const before = sue.sent.joins;
  await sleep(1_500);
  if (sue.sent.joins !== before) throw new Error("the page kept joining after Stop trying");
  await ray.page.context().close();
  await sue.page.context().close();
});

await scenario("the waiting room shows the place and progress, and moves on by itself when the turn comes", async () => {
  const aurora = concertIdOf("Aurora");
  // Kim is admitted; then the room admits one at a time, so Lee waits behind Kim's turn.
  const kim = await open("kim");
  await toSeatMap(kim);
  ctl("policy", "--concert", aurora, "--max-active", "1");
  const lee = await open("lee");
  try {
    await card(lee, /Aurora/).getByRole("button", { name: "Join the waiting room" }).click();
    await heading(lee, /Waiting room: Aurora/);
    await expectText(lee, /You are number 1 of 1 waiting/, "the place in line");
    await lee.getByRole("progressbar", { name: "Your progress through the line" }).waitFor();
    await step(lee, "waiting-room");
    // A reload keeps the place (the same token, not a new one at the back).
    await lee.reload();
    await heading(lee, /Waiting room: Aurora/);
    await expectText(lee, /You are number 1 of 1 waiting/, "the place after a reload");
  } finally {
    ctl("policy", "--concert", aurora, "--max-active", "1000");
  }
  await heading(lee, /Choose a date/);
  // The line is not a step to go Back to: Back from the dates is the concert list.
  await lee.goBack();
  await heading(lee, "Pick a concert");
  await expectText(lee, "Back to your place", "the concert in whose line this tab is");
  await kim.context().close();
  await lee.context().close();
});

await scenario("a sold-out sale ends the line: the waiting room says every seat is sold and offers to leave", async () => {
  // A small rush of the operator's load generator sells a concert of its own out: one date,
  // 50 seats, 60 buyers, nobody abandoning (its checks fail the command if anything is off).
  ctl("bench", "rush", "--users", "60", "--seats", "50", "--max-active", "60", "--abandon", "0", "--duration", "120", "--quiet");
  const rush = ctl("concerts").split("\n").find((l) => l.split("\t")[1]?.startsWith("rush "))?.split("\t");
  if (!rush) throw new Error("the rush's concert is not listed");
  const [concertId, title] = rush;
  // One person at a time: Mia is let in (to a sale with nothing left), so Ned waits.
  ctl("policy", "--concert", concertId, "--max-active", "1");
  const mia = await open("mia");
  await card(mia, title).getByRole("button", { name: "Join the waiting room" }).click();
  await heading(mia, /Choose a date/);
  const ned = await open("ned");
  await card(ned, title).getByRole("button", { name: "Join the waiting room" }).click();
  await heading(ned, new RegExp(`Waiting room: ${title}`));
  // The queue looks at each room's sales every 2 s; the notice replaces the wait.
  await expectText(ned, /Every seat is sold/, "the sold-out notice");
  await step(ned, "sold-out");
  await ned.getByRole("status").getByRole("button", { name: "Leave the waiting room" }).click();
  await heading(ned, "Pick a concert");
  // Out of the line: the concert offers a fresh join, not "Back to your place".
  await card(ned, title).getByRole("button", { name: "Join the waiting room" }).waitFor();
  await mia.context().close();
  await ned.context().close();
});

await browser.close();
console.log(failures.length ? `${failures.length} browser scenario(s) failed` : `browser scenarios passed; screenshots in ${SHOTS}`);
process.exit(failures.length ? 1 : 0);
