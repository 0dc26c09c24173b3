// The Channels tutorial's room page (examples/channels4/mysite, chat/room.html) in two tabs:
// a message typed in one appears in both tabs' chat logs (the page's socket -> the
// consumer -> the room's group on the channel layer -> both sockets).
// usage: node tutorial_chat.mjs BASE_URL ROOM SCREENSHOT_PATH
import { chromium } from "playwright-core";

const [base, room, screenshot] = process.argv.slice(2);
const logHas = (page, text) => page.waitForFunction(
  (t) => document.querySelector("#chat-log").value.includes(t), text, { timeout: 15000 });
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
try {
  const context = await browser.newContext();
  const alice = await context.newPage();
  const bob = await context.newPage();
  const errors = [];
  for (const page of [alice, bob]) {
    page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
    await page.goto(`${base}/chat/${room}/`);
    await page.waitForFunction(() => typeof chatSocket !== "undefined" && chatSocket.readyState === 1,
      null, { timeout: 15000 });
  }
  const text = `hello from alice ${Date.now()}`;
  await alice.fill("#chat-message-input", text);
  await alice.press("#chat-message-input", "Enter");
  await logHas(bob, text);
  await logHas(alice, text);
  const reply = `and from bob ${Date.now()}`;
  await bob.fill("#chat-message-input", reply);
  await bob.click("#chat-message-submit");
  await logHas(alice, reply);
  const aliceLog = await alice.$eval("#chat-log", (t) => t.value);
  await alice.screenshot({ path: screenshot, fullPage: true });
  console.log(JSON.stringify({ ok: true, text, reply, aliceLog, errors }));
} finally {
  await browser.close();
}
