'use strict';
// Loads Caddy's file_server browse listings (one per URL argument) in Debian's Chromium through
// playwright-core and prints one JSON document of what it saw, by URL: the CSP violations (the page's
// securitypolicyviolation events), the body's computed background (set by the listing's
// <style>), and the file rows the listing's <script> hid (its filter, from ?filter=). The Go
// test decides what is right; this script only looks.
//
//	NODE_PATH=.ci/node/node_modules CHROMIUM=/usr/lib/chromium/chromium \
//	  node browse_listing.js 'http://127.0.0.1:8080/dir/?filter=aaa' ...
const { launch } = require('./chromium');

(async () => {
	const browser = await launch();
	const out = {};
	try {
		const context = await browser.newContext({ colorScheme: 'light' });
		// Runs before the page's own script, through the DevTools protocol (not under the CSP).
		await context.addInitScript(() => {
			window.__csp = [];
			document.addEventListener('securitypolicyviolation', (e) => {
				window.__csp.push({ directive: e.effectiveDirective, disposition: e.disposition, blocked: e.blockedURI, sample: e.sample });
			}, true);
		});
		const page = await context.newPage();
		for (const url of process.argv.slice(2)) {
			await page.goto(url, { waitUntil: 'load' });
			await page.waitForTimeout(300); // the listing filters on load
			out[url] = await page.evaluate(() => ({
				csp: window.__csp.slice(),
				background: getComputedStyle(document.body).backgroundColor,
				rows: document.querySelectorAll('tr.file').length,
				hidden: [...document.querySelectorAll('tr.file')].filter((r) => r.style.display === 'none').length,
			}));
		}
	} finally {
		await browser.close();
	}
	process.stdout.write(JSON.stringify(out) + '\n');
})().catch((e) => {
	process.stderr.write(String(e && e.stack || e) + '\n');
	process.exit(1);
});
