import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { type Browser, type BrowserContext, chromium, type Page } from "playwright-core";
import { PROJECT_ROOT } from "../../scripts/lib/control-plane.ts";

/** Debian's chromium (`apt-get install chromium`); playwright-core brings no browser of its own. */
export const CHROMIUM_PATH = process.env.ZECTRE_CHROMIUM ?? "/usr/bin/chromium";

/** Gitignored; every run overwrites the same names. */
export const SCREENSHOT_DIR = join(PROJECT_ROOT, "test-results/screenshots");

export const PHONE_VIEWPORT = { width: 390, height: 844 };

export interface HeadlessBrowser {
  browser: Browser;
  /** A fresh context (own sessionStorage) and page; console errors and page errors are collected in `errors`. */
  open(viewport?: { width: number; height: number }): Promise<{ context: BrowserContext; page: Page; errors: string[] }>;
  screenshot(page: Page, name: string): Promise<string>;
  close(): Promise<void>;
}

export async function launchChromium(): Promise<HeadlessBrowser> {
  if (!existsSync(CHROMIUM_PATH)) throw new Error(`no browser at ${CHROMIUM_PATH}: apt-get install -y chromium (or set ZECTRE_CHROMIUM)`);
  // No sandbox: CI runs as root, where Chromium refuses to start sandboxed.
  const browser = await chromium.launch({ executablePath: CHROMIUM_PATH, headless: true, args: ["--no-sandbox"] });
  mkdirSync(SCREENSHOT_DIR, { recursive: true });
  return {
    browser,
    async open(viewport = { width: 1280, height: 860 }) {
      const context = await browser.newContext({ viewport });
      const page = await context.newPage();
      const errors: string[] = [];
      page.on("pageerror", (error) => errors.push(`pageerror: ${error.message}`));
      page.on("console", (message) => {
        if (message.type() === "error") errors.push(`console: ${message.text()}`);
      });
      return { context, page, errors };
    },
    async screenshot(page, name) {
      const path = join(SCREENSHOT_DIR, `${name}.png`);
      await page.screenshot({ path, fullPage: true });
      return path;
    },
    close: () => browser.close(),
  };
}
