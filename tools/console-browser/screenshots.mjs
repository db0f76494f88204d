// Screenshots of the console's main pages for the README, taken from a
// running server (tools/console-screenshots.sh starts `fleetward demo
// --keep` and calls this). Usage:
//   FLEETWARD_CONSOLE=http://127.0.0.1:8080 FLEETWARD_TOKEN=fwt_... node screenshots.mjs OUT_DIR
// Pages are found by following the console's own links, so the shots show
// whatever the server holds (the demo's fleet, releases and rollouts).
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { launch, need, signIn } from "./common.mjs";

const base = need("FLEETWARD_CONSOLE");
const token = need("FLEETWARD_TOKEN");
const out = process.argv[2] || "docs/screenshots";
mkdirSync(out, { recursive: true });

const browser = await launch();
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  await signIn(page, base, token);

  const shot = async (name, path, options = {}) => {
    if (path) {
      await page.goto(`${base}${path}`);
    }
    const file = join(out, `${name}.png`);
    await page.screenshot({ path: file, fullPage: options.fullPage ?? false });
    console.log(`wrote ${file} (${page.url().slice(base.length)})`);
  };
  const firstLink = async (selector) => {
    const href = await page.locator(selector).first().getAttribute("href");
    if (!href) {
      throw new Error(`no link ${selector} on ${page.url()}`);
    }
    return href;
  };

  await shot("overview", "/console/");
  await shot("devices", `/console/devices?q=${encodeURIComponent('region in ("eu", "us") and not beta')}`);
  await page.goto(`${base}/console/devices?q=${encodeURIComponent('ring = "demo"')}`);
  await shot("device", await firstLink("main tbody a[href^='/console/devices/']"), { fullPage: true });
  await shot("releases", "/console/releases");
  await shot("rollouts", "/console/rollouts");
  // Newest first: in the demo, the bad release's rollout that paused itself;
  // the oldest is the phased rollout that completed.
  const rollouts = await page.locator("main tbody a[href^='/console/rollouts/ro-']").evaluateAll((links) =>
    links.map((link) => link.getAttribute("href")),
  );
  if (rollouts.length === 0) {
    throw new Error("no rollouts to show");
  }
  await shot("rollout", rollouts[rollouts.length - 1], { fullPage: true });
  if (rollouts.length > 1) {
    await shot("rollout-failed", rollouts[0], { fullPage: true });
  }
  await shot("rollout-start", "/console/rollouts/new");
  await shot("events", "/console/events?verify=1");
  await shot("audit", "/console/audit");

  const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
  const phonePage = await phone.newPage();
  await signIn(phonePage, base, token);
  await phonePage.goto(`${base}/console/`);
  await phonePage.screenshot({ path: join(out, "overview-phone.png") });
  console.log(`wrote ${join(out, "overview-phone.png")}`);
} finally {
  await browser.close();
}
