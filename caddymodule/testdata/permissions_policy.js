'use strict';
// Loads pages (one per URL argument) in Debian's Chromium through playwright-core and prints
// one JSON document of what it saw, by URL: the console messages about the Permissions-Policy
// header, and whether the page may use geolocation and camera (document.featurePolicy). The Go
// test decides what is right; this script only looks.
//
//	NODE_PATH=.ci/node/node_modules CHROMIUM=/usr/lib/chromium/chromium \
//	  node permissions_policy.js 'http://127.0.0.1:8080/ok/0' ...
const { launch } = require('./chromium');

(async () => {
	const browser = await launch();
	const out = {};
	try {
		for (const url of process.argv.slice(2)) {
			const page = await browser.newPage();
			const messages = [];
			page.on('console', (m) => {
				if (m.text().includes('Permissions-Policy')) messages.push(m.text());
			});
			await page.goto(url, { waitUntil: 'load' });
			out[url] = await page.evaluate(() => ({
				geolocation: document.featurePolicy.allowsFeature('geolocation'),
				camera: document.featurePolicy.allowsFeature('camera'),
			}));
			out[url].messages = messages;
			await page.close();
		}
	} finally {
		await browser.close();
	}
	process.stdout.write(JSON.stringify(out) + '\n');
})().catch((e) => {
	process.stderr.write(String(e && e.stack || e) + '\n');
	process.exit(1);
});
