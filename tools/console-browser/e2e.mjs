// The console end to end in headless Chromium, against a running server
// whose simulated fleet keeps polling (started by
// crates/fleetward-agent/tests/console_browser.rs, which also checks the
// outcome through the API). Every step asserts what a person would see:
// counts, states, messages; a failing step saves a screenshot and the page
// text to FLEETWARD_E2E_ARTIFACTS and exits non-zero.
//
// The fleet it expects: 12 `sim` devices tagged region=eu (eu-000000..),
// 4 tagged region=us with us-000001 quarantined, 3 `rev1` lab devices, and
// a published release 1.1.0 for `sim`.
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { launch, need, signIn } from "./common.mjs";

const base = need("FLEETWARD_CONSOLE");
const admin = need("FLEETWARD_ADMIN_TOKEN");
const viewer = need("FLEETWARD_VIEWER_TOKEN");
const artifacts = process.env.FLEETWARD_E2E_ARTIFACTS || "e2e-artifacts";

function check(condition, message) {
  if (!condition) {
    throw new Error(message);
  }
}

/// Polls `probe` until it returns something truthy (the live page changes
/// by itself; the refresh runs every 5 s).
async function until(what, probe, timeoutMs = 45000) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    last = await probe();
    if (last) {
      return last;
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  throw new Error(`timed out waiting for ${what} (last: ${JSON.stringify(last)})`);
}

const text = (page, selector) => page.locator(selector).first().innerText();

let current = null;
const timings = [];
async function step(name, run) {
  const started = Date.now();
  try {
    await run();
  } catch (error) {
    mkdirSync(artifacts, { recursive: true });
    const file = name.replace(/[^a-z0-9]+/gi, "-").toLowerCase();
    if (current) {
      await current.screenshot({ path: join(artifacts, `${file}.png`), fullPage: true }).catch(() => {});
      const body = await current.locator("body").innerText().catch(() => "");
      writeFileSync(join(artifacts, `${file}.txt`), `${current.url()}\n\n${body}`);
      console.error(`FAILED at ${current.url()}:\n${body.slice(0, 2000)}`);
    }
    throw new Error(`step "${name}": ${error.message}`);
  }
  const took = (Date.now() - started) / 1000;
  timings.push([name, took]);
  console.log(`ok  ${took.toFixed(1).padStart(5)} s  ${name}`);
}

const browser = await launch();
let failed = false;
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  current = page;
  const scriptErrors = [];
  page.on("pageerror", (error) => scriptErrors.push(error.message));
  page.on("console", (message) => {
    // A CSP violation shows up as a console error: there must be none.
    // (Refusals the steps provoke on purpose, a 401, 400 or 422 page, are
    // logged as "Failed to load resource" and are expected.)
    if (message.type() === "error" && !message.text().startsWith("Failed to load resource")) {
      scriptErrors.push(message.text());
    }
  });

  await step("sign in with the keyboard; a wrong token is refused plainly", async () => {
    await page.goto(`${base}/console/`);
    check(page.url().endsWith("/console/login"), `not sent to the login page: ${page.url()}`);
    const focused = await page.evaluate(() => document.activeElement && document.activeElement.id);
    check(focused === "token", `the token field has no focus (${focused})`);
    await page.keyboard.type("fwt_0123456789abcdef_not-a-real-token");
    await page.keyboard.press("Enter");
    await page.waitForLoadState();
    check(
      (await text(page, "[role=alert]")).includes("not valid"),
      "no plain refusal for a wrong token",
    );
    await signIn(page, base, admin);
    check((await text(page, "h1")) === "Fleet overview", "the overview did not open");
    const cards = await page.locator(".card").allInnerTexts();
    const card = (label) => cards.find((c) => c.endsWith(label)) || "";
    check(card("devices").startsWith("19"), `overview shows ${card("devices")} devices, not 19`);
    check(card("quarantined").startsWith("1"), `quarantined card: ${card("quarantined")}`);
  });

  await step("search devices with the query language", async () => {
    await page.getByRole("link", { name: "Devices", exact: true }).click();
    await page.waitForURL(`${base}/console/devices`);
    await page.fill("#q", 'region = "eu" and hw = "sim"');
    await Promise.all([page.waitForURL(/\/console\/devices\?q=/), page.press("#q", "Enter")]);
    check((await text(page, "main")).includes("12 devices match."), "not 12 eu devices");
    const ids = await page.locator("main tbody tr td:first-child").allInnerTexts();
    check(ids.length === 12 && ids.every((id) => id.startsWith("eu-")), `rows: ${ids}`);
    await page.fill("#q", "status = quarantined");
    await Promise.all([page.waitForURL(/quarantined/), page.press("#q", "Enter")]);
    check((await text(page, "main")).includes("1 devices match."), "not 1 quarantined device");
    check((await text(page, "main tbody")).includes("us-000001"), "us-000001 not listed");
    await page.fill("#q", "region ==");
    await Promise.all([page.waitForLoadState(), page.press("#q", "Enter")]);
    await page.waitForSelector("[role=alert]");
    check((await text(page, "[role=alert]")).includes("does not parse"), "a bad query is not explained");
  });

  let rolloutUrl = "";
  await step("start a rollout from the release (a bad setting is refused first)", async () => {
    await page.getByRole("link", { name: "Releases", exact: true }).click();
    await page.getByRole("link", { name: "roll out" }).first().click();
    await page.waitForURL(/\/console\/rollouts\/new\?release=1\.1\.0/);
    check((await page.inputValue("#release")) === "1.1.0", "the release is not preselected");
    await page.fill("#target", 'region = "eu"');
    await page.fill("#phases", "50%,10%");
    await page.fill("#soak", "1h");
    await page.fill("#success_threshold", "100%");
    await page.fill("#max_failures", "25%");
    await Promise.all([page.waitForLoadState(), page.getByRole("button", { name: "Start rollout" }).click()]);
    await page.waitForSelector("#problem");
    check((await text(page, "#problem")).includes("must grow"), "the bad phases are not explained");
    check((await page.inputValue("#target")) === 'region = "eu"', "the target was not kept");
    await page.fill("#phases", "50%,100%");
    await Promise.all([
      page.waitForURL(/\/console\/rollouts\/ro-[0-9a-f]+$/),
      page.getByRole("button", { name: "Start rollout" }).click(),
    ]);
    rolloutUrl = page.url();
    check((await text(page, "main")).includes("running"), "the new rollout is not running");
  });

  await step("watch it progress: the page updates in place until phase 1 is done", async () => {
    await page.evaluate(() => {
      window.__sameDocument = true;
    });
    const phase1 = async () =>
      page.evaluate(() => {
        const row = document.querySelector("main table tbody tr");
        if (!row) {
          return null;
        }
        const cells = Array.from(row.querySelectorAll("td")).map((td) => td.textContent.trim());
        const bar = row.querySelector("progress");
        return { succeeded: Number(cells[4]), total: Number(bar && bar.getAttribute("max")), value: Number(bar && bar.value) };
      });
    const before = await phase1();
    check(before && before.total > 0, `phase 1 is empty: ${JSON.stringify(before)}`);
    // The sim agents take a few rounds (install, reboot, commit); the
    // refresh shows it without a reload.
    const done = await until("phase 1 to succeed on the page", async () => {
      const now = await phase1();
      return now && now.succeeded === now.total && now.value === now.total ? now : null;
    });
    check(before.succeeded < done.succeeded, `no progress seen (${before.succeeded} then ${done.succeeded})`);
    check(await page.evaluate(() => window.__sameDocument === true), "the page was reloaded");
    const chart = await page.locator("main svg.chart").count();
    check(chart > 0, "no progress chart");
  });

  await step("a viewer sees the rollout but no buttons", async () => {
    const viewerContext = await browser.newContext();
    const viewerPage = await viewerContext.newPage();
    await signIn(viewerPage, base, viewer);
    await viewerPage.goto(`${base}/console/rollouts`);
    check((await viewerPage.locator("a", { hasText: "Start a rollout" }).count()) === 0, "viewer sees Start");
    await viewerPage.goto(rolloutUrl);
    check((await viewerPage.locator("main button").count()) === 0, "viewer sees buttons");
    await viewerContext.close();
  });

  await step("pause it", async () => {
    await page.getByRole("button", { name: "Pause" }).click();
    await page.waitForSelector("text=Paused: ");
    check((await text(page, "main p")).includes("paused"), "the state is not paused");
    check((await page.getByRole("button", { name: "Resume" }).count()) === 1, "no Resume button");
    await page.goto(`${base}/console/rollouts`);
    const row = await text(page, "main tbody tr");
    check(row.includes("paused") && row.includes("1.1.0"), `list row: ${row}`);
  });

  await step("open a security event and verify the chain", async () => {
    await page.getByRole("link", { name: "Security events", exact: true }).click();
    await page.selectOption("#kind", "device.quarantined");
    await Promise.all([page.waitForURL(/kind=device\.quarantined/), page.getByRole("button", { name: "Filter" }).click()]);
    const rows = page.locator("main tbody tr");
    check((await rows.count()) === 1, `expected one quarantine event, got ${await rows.count()}`);
    await rows.first().locator("td:first-child a").click();
    await page.waitForURL(/\/console\/events\/\d+$/);
    const detail = await text(page, "main");
    check(detail.includes("device.quarantined"), "kind missing");
    check(detail.includes("us-000001"), "device missing");
    check(detail.includes("certificate seen from two addresses"), "reason missing");
    await page.goto(`${base}/console/events`);
    await page.getByRole("button", { name: /Verify the hash chain/ }).click();
    await page.waitForSelector("text=Chain intact");
  });

  await step("keyboard: skip link first, then the navigation", async () => {
    await page.goto(`${base}/console/devices`);
    await page.keyboard.press("Tab");
    const first = await page.evaluate(() => document.activeElement.textContent.trim());
    check(first === "Skip to content", `first Tab stop is ${first}`);
    await page.keyboard.press("Tab");
    await page.keyboard.press("Tab");
    const second = await page.evaluate(() => document.activeElement.textContent.trim());
    check(second === "Overview", `third Tab stop is ${second}`);
    await page.keyboard.press("Enter");
    await page.waitForURL(`${base}/console/`);
  });

  await step("a phone-width viewport needs no sideways scrolling", async () => {
    const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
    const phonePage = await phone.newPage();
    await signIn(phonePage, base, admin);
    for (const path of ["/console/", "/console/devices", "/console/releases", "/console/releases/1.1.0", rolloutUrl.slice(base.length), "/console/rollouts/new"]) {
      const answer = await phonePage.goto(`${base}${path}`);
      check(answer.ok(), `${path} answered ${answer.status()}`);
      const widths = await phonePage.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
      check(widths[0] <= widths[1], `${path} is ${widths[0]} px wide on a ${widths[1]} px screen`);
    }
    await phone.close();
  });

  await step("no script errors or CSP violations", async () => {
    check(scriptErrors.length === 0, scriptErrors.join("\n"));
  });
  await context.close();
} catch (error) {
  failed = true;
  console.error(error.message);
} finally {
  await browser.close();
}
const total = timings.reduce((sum, [, took]) => sum + took, 0);
console.log(`${timings.length} steps in ${total.toFixed(1)} s`);
process.exit(failed ? 1 : 0);
