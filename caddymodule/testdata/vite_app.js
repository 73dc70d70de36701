'use strict';
// Loads the builds of testdata (one URL per argument) in Debian's Chromium through
// playwright-core and prints one JSON document of what it saw, by URL: the app's #out (a word
// per part of the build that ran, the one given by --ready last, "lazy;" by default), the CSP
// violations (the page's securitypolicyviolation events, from before the page's first
// script), and whether a
// script injected into the page ran. Then it loads the URL given by --sentinel (a page whose
// inline script the policy blocks) so that the Go test knows csp_report received what came
// before, and keeps the browser open (reports are sent after the violation) until a GET of the
// URL given by --until answers. The Go test decides what is right; this script only looks.
//
//	NODE_PATH=.ci/node/node_modules CHROMIUM=/usr/lib/chromium/chromium node vite_app.js \
//	  http://127.0.0.1:8080/ ... [--ready 'lazy;'] --sentinel http://127.0.0.1:8080/sentinel \
//	  --until http://127.0.0.1:9090/
const { launch } = require('./chromium');

(async () => {
	const args = process.argv.slice(2);
	const at = args.indexOf('--sentinel');
	const sentinel = at >= 0 ? args.splice(at, 2)[1] : '';
	const until = args.indexOf('--until') >= 0 ? args.splice(args.indexOf('--until'), 2)[1] : '';
	const ready = args.indexOf('--ready') >= 0 ? args.splice(args.indexOf('--ready'), 2)[1] : 'lazy;';
	const browser = await launch();
	const out = {};
	try {
		const context = await browser.newContext();
		// Runs before the page's own scripts, through the DevTools protocol (not under the CSP).
		await context.addInitScript(() => {
			window.__csp = [];
			document.addEventListener('securitypolicyviolation', (e) => {
				window.__csp.push({ directive: e.effectiveDirective, disposition: e.disposition, blocked: e.blockedURI, sample: e.sample });
			}, true);
		});
		const page = await context.newPage();
		for (const url of args) {
			await page.goto(url, { waitUntil: 'load' });
			// The last part to run; a build the policy breaks never gets there.
			await page.waitForFunction((w) => (document.getElementById('out') || {}).textContent?.includes(w),
				ready, { timeout: 10000 }).catch(() => {});
			out[url] = await page.evaluate(() => ({
				out: (document.getElementById('out') || {}).textContent || '',
				csp: window.__csp.slice(),
				injected: document.documentElement.dataset.injected || '',
			}));
		}
		if (sentinel) {
			await page.goto(sentinel, { waitUntil: 'load' });
		}
		if (until) {
			await fetch(until);
		}
	} finally {
		await browser.close();
	}
	process.stdout.write(JSON.stringify(out) + '\n');
})().catch((e) => {
	process.stderr.write(String(e && e.stack || e) + '\n');
	process.exit(1);
});
