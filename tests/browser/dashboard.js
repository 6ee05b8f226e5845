// Loads the dashboard in headless chromium and reports what it drew, as one JSON line.
// usage: node dashboard.js URL SCREENSHOT_PATH
"use strict";
const { chromium } = require("playwright-core");

(async () => {
  const [url, shot] = process.argv.slice(2);
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
      "--disable-component-update", "--disable-sync", "--no-first-run",
    ],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const consoleErrors = [];
    page.on("console", (m) => { if (m.type() === "error") consoleErrors.push(m.text()); });
    page.on("pageerror", (e) => consoleErrors.push(String(e)));
    const external = [];
    page.on("request", (r) => { if (!r.url().startsWith(new URL(url).origin)) external.push(r.url()); });
    await page.goto(url, { waitUntil: "networkidle" });
    await page.waitForFunction(() => document.body.dataset.ready && document.body.dataset.ready !== "0",
      null, { timeout: 30000 });
    const report = await page.evaluate(() => {
      const count = (sel) => document.querySelectorAll(sel).length;
      return {
        ready: document.body.dataset.ready,
        jobs: count("tr.job-row"),
        total_points: count("#chart-total svg circle.point"),
        metric_points: count("#chart-metrics svg circle.point"),
        contrib_bars: count("#chart-contrib svg rect.bar"),
        flag_marks: count("#chart-contrib svg g.flag-mark"),
        count_bars: count("#chart-counts svg rect.count"),
        payout_rows: count("#chart-payouts svg rect.payout"),
        reliability_bars: count("#chart-reliability svg rect.reliability"),
        flag_rows: count("#flags table tr") - 1,
        explain_rows: count("#explain tr.explain-row"),
        explain_flagged: count("#explain tr.explain-row td.flag"),
        explain_slashes: count("#explain li.explain-slash"),
        explain_reliability: count("#explain li.explain-reliability"),
        explain_selected: (document.querySelector("#explain .trainer-pick button.selected") || {}).dataset?.trainer || null,
        svgs: count("svg"),
        title: document.title,
      };
    });
    report.console_errors = consoleErrors;
    report.external_requests = external;
    await page.screenshot({ path: shot, fullPage: true });
    process.stdout.write(JSON.stringify(report) + "\n");
  } finally {
    await browser.close();
  }
})().catch((e) => { console.error(String(e && e.stack || e)); process.exit(1); });
