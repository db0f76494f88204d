// Shared by the end-to-end test and the screenshot command: how Debian's
// Chromium is started here, and signing in through the console's own form.
import { chromium } from "playwright-core";

// Flags that keep a headless Chromium quiet on a machine with no internet:
// without the background-networking ones it tries Google's services and its
// connections are refused; --no-sandbox because CI runs as root.
const FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

export function need(name) {
  const value = process.env[name];
  if (!value) {
    throw new Error(`${name} is not set`);
  }
  return value;
}

export async function launch() {
  // playwright-core makes a fresh --user-data-dir per launch.
  return chromium.launch({
    executablePath: process.env.FLEETWARD_CHROMIUM || "/usr/bin/chromium",
    args: FLAGS,
    headless: true,
  });
}

// Signs in on the login form, typing the token and pressing Enter.
export async function signIn(page, base, token) {
  await page.goto(`${base}/console/`);
  if (!page.url().endsWith("/console/login")) {
    throw new Error(`expected the login page, got ${page.url()}`);
  }
  // Chromium applies `autofocus` once per tab, so focus the field
  // explicitly (the end-to-end test checks autofocus on the first load).
  await page.focus("#token");
  await page.keyboard.type(token);
  await Promise.all([page.waitForURL(`${base}/console/`), page.keyboard.press("Enter")]);
}
