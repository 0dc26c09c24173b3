// Two browser tabs open the chat page, join one room, and a message typed in one
// appears in the other (protocol server -> Redis -> worker -> group -> both sockets).
// With "restart" it then prints RESTART, waits for a line on stdin (the protocol server
// was restarted meanwhile), and checks both tabs rejoined the room and chat again.
// usage: node chat.mjs BASE_URL SCREENSHOT_PATH [restart]
import { chromium } from "playwright-core";

const [base, screenshot, restart] = process.argv.slice(2);
const logHas = (page, text, timeout = 15000) => page.waitForFunction(
  (t) => document.querySelector("#log").innerText.includes(t), text, { timeout });
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
try {
  const context = await browser.newContext();
  const alice = await context.newPage();
  const bob = await context.newPage();
  for (const [page, name] of [[alice, "alice"], [bob, "bob"]]) {
    await page.goto(`${base}/`);
    await page.fill("#user", name);
    await page.fill("#room", "browsers");
    await page.click("#join");
    await page.waitForSelector("#message:not([disabled])", { timeout: 15000 });
  }
  const text = `hello from alice ${Date.now()}`;
  await alice.fill("#message", text);
  await alice.press("#message", "Enter");
  await bob.waitForFunction(
    (t) => document.querySelector("#log").innerText.includes(t), text, { timeout: 15000 });
  await alice.waitForFunction(
    (t) => document.querySelector("#log").innerText.includes(t), text, { timeout: 15000 });
  let bobLog = await bob.innerText("#log");
  await bob.screenshot({ path: screenshot, fullPage: true });
  let again = null;
  if (restart === "restart") {
    console.log("RESTART");
    await new Promise((resolve) => process.stdin.once("data", resolve));
    for (const page of [alice, bob]) {
      await logHas(page, "disconnected: server restarting", 30000);
      await logHas(page, "rejoined browsers", 30000);
      await page.waitForSelector("#message:not([disabled])", { timeout: 15000 });
    }
    again = `after the restart ${Date.now()}`;
    await bob.fill("#message", again);
    await bob.press("#message", "Enter");
    await logHas(alice, again);
    bobLog = await bob.innerText("#log");
  }
  // A room the server refuses: the page says why instead of a bare close code.
  await alice.fill("#room", "no spaces!");
  await alice.click("#join");
  await alice.waitForFunction(
    () => document.querySelector("#status").innerText.startsWith("cannot join: room names"),
    null, { timeout: 15000 });
  const refused = await alice.innerText("#status");
  const labels = await alice.$$eval("label", (ls) => ls.map((l) => l.htmlFor));
  console.log(JSON.stringify({ ok: true, text, bobLog, refused, labels, again }));
} finally {
  await browser.close();
}
