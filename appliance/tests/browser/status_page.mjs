// Drives Debian's headless Chromium (through playwright-core) against a real
// `pastiche daemon`'s status page. Run by appliance/tests/browser.rs, which
// starts the daemons and passes:
//   PAGE_URL            the page, like http://127.0.0.1:40123
//   EXPECTED_SNAPSHOTS  JSON array of the snapshot ids the CLI lists
//   BUDDY_ADDR          the buddy's HOST:PORT, BUDDY_PID its daemon's pid
//   SCREENSHOT_DIR      where the screenshots go
//   PAIRING_ID          a pending pairing request, to accept with its button
// Prints one JSON line with what it saw; any failed expectation throws
// (exit code 1).
import { chromium } from "playwright-core";

const url = process.env.PAGE_URL;
const expected = JSON.parse(process.env.EXPECTED_SNAPSHOTS);
const buddyAddr = process.env.BUDDY_ADDR;
const buddyPid = Number(process.env.BUDDY_PID);
const shots = process.env.SCREENSHOT_DIR;
const log = (...a) => console.error("[browser]", ...a);
const check = (ok, what) => {
  if (!ok) throw new Error(`expectation failed: ${what}`);
};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/// Polls `f` (retrying through page reloads) until it returns a truthy value.
async function until(what, f, timeoutMs = 90000) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    try {
      last = await f();
      if (last) return last;
    } catch (e) {
      last = e.message; // the page was reloading
    }
    await sleep(100);
  }
  throw new Error(`timed out waiting for ${what} (last: ${JSON.stringify(last)})`);
}

const snapshotIds = (page) => page.$$eval("tr.snapshot", (rows) => rows.map((r) => r.dataset.id));
const buddyState = (page) => page.textContent(`tr[data-addr="${buddyAddr}"] .state`);

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  headless: true,
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
const seen = { progress: [] };
try {
  // Without JavaScript the read-only view is complete.
  const nojs = await browser.newContext({ javaScriptEnabled: false });
  const plain = await nojs.newPage();
  await plain.goto(url + "/");
  const ids = await snapshotIds(plain);
  check(JSON.stringify([...ids].sort()) === JSON.stringify([...expected].sort()), `snapshots ${ids} = ${expected}`);
  check((await plain.getAttribute("#verdict", "data-verdict")) === "ok", "the verdict is ok");
  check((await buddyState(plain)) === "current", "the buddy is current");
  check((await plain.locator("#backup-now").count()) === 1, "a back-up-now button");
  seen.no_js_snapshots = ids;
  await nojs.close();

  // With JavaScript: back up now, live progress, the new snapshot.
  const ctx = await browser.newContext({ viewport: { width: 1200, height: 1000 } });
  const page = await ctx.newPage();
  page.on("console", (m) => log("console:", m.text()));
  await page.goto(url + "/");
  await page.click("#backup-now");
  await until("the backup's progress on the page", async () => {
    const kind = await page.getAttribute("#job", "data-kind", { timeout: 1000 });
    if (kind === "backup") {
      seen.progress.push(await page.textContent("#job-text", { timeout: 1000 }));
      if (seen.progress.length === 1) await page.screenshot({ path: `${shots}/status-page-progress.png` });
    }
    return seen.progress.length >= 1;
  });
  log("progress:", seen.progress);
  seen.after_backup = await until("the new snapshot", async () => {
    const now = await snapshotIds(page);
    return now.length === expected.length + 1 ? now : null;
  });
  // The new snapshot is shipped to the buddy.
  await until("the buddy current again", async () => (await buddyState(page)) === "current");

  // A pairing request from a box on the LAN: accept it with its button.
  const pairing = `#pairing li[data-id="${process.env.PAIRING_ID}"]`;
  await until("the pairing request listed", async () => (await page.locator(pairing).count()) > 0);
  seen.pairing_text = await page.textContent(pairing);
  await page.click(`${pairing} button.accept`);
  await until("the pairing request answered", async () => {
    await sleep(400);
    await page.goto(url + "/");
    return (await page.locator(pairing).count()) === 0;
  });
  seen.pairing_accepted = process.env.PAIRING_ID;

  // Stop the buddy: the page raises the alert.
  process.kill(buddyPid, "SIGKILL");
  await until("the buddy alert", async () => (await page.locator('#alerts li[data-code="buddy_unreachable"]').count()) > 0);
  seen.verdict = await page.getAttribute("#verdict", "data-verdict");
  seen.buddy_state = await until("the buddy unreachable", async () => {
    const s = await buddyState(page);
    return s === "unreachable" ? s : null;
  });
  seen.alerts = await page.$$eval("#alerts li", (lis) => lis.map((li) => li.textContent));
  await page.screenshot({ path: `${shots}/status-page.png`, fullPage: true });
  console.log(JSON.stringify(seen));
} finally {
  await browser.close();
}
