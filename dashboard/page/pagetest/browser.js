'use strict';
// Drives the security dashboard in Debian's Chromium through playwright-core and prints one
// JSON document of what it saw: console errors, CSP violations (the page's
// securitypolicyviolation events), every request, and DOM facts (chart series sums and
// points, table rows, the tooltip, the state after a logout). The Go tests decide what is
// right; this script only looks.
//
//	NODE_PATH=.ci/node/node_modules CHROMIUM=/usr/lib/chromium/chromium \
//	  node browser.js '{"url": "http://127.0.0.1:8080/api/monitoring/dashboard", "key": "..."}'
//
// Options (one JSON argument):
//   url           the page
//   key           an API key to type into the login prompt when the page asks ("" = none)
//   minUpdates    data refreshes to wait for before reading the page (default 2: proves the 5 s refresh)
//   screenshot    PNG path of the full page, light scheme ("" = none); screenshotDark the same in dark
//   switchRange   click "1 hour" and read the charts again, then back to "15 min"
//   switchScope   click "All instances" when the switch is shown
//   logout        click "Log out" at the end and read what is left
const { chromium } = require('playwright-core');

const opt = Object.assign({ key: '', minUpdates: 2, screenshot: '', screenshotDark: '', switchRange: false, switchScope: false, logout: false }, JSON.parse(process.argv[2]));

// facts reads the page (runs inside the browser).
function facts() {
	const vis = (el) => !!el && !el.closest('[hidden]') && el.getClientRects().length > 0;
	const charts = {};
	for (const fig of document.querySelectorAll('figure[data-chart]')) {
		charts[fig.dataset.chart] = {
			buckets: Number(fig.dataset.buckets || 0),
			empty: fig.dataset.empty === 'true',
			series: [...fig.querySelectorAll('g.series')].map((g) => ({
				name: g.dataset.series, sum: Number(g.dataset.sum), nonzero: Number(g.dataset.nonzero),
				points: Number(g.dataset.points), paths: g.querySelectorAll('path,circle').length,
			})),
			ticks: [...fig.querySelectorAll('.axis text')].map((t) => t.textContent),
			legend: [...fig.querySelectorAll('.legend li')].map((li) => li.textContent),
			svgs: fig.querySelectorAll('svg').length,
		};
	}
	const tables = {};
	for (const t of document.querySelectorAll('table[id]')) {
		tables[t.id] = [...t.tBodies[0].rows].filter((r) => !r.classList.contains('empty-row')).map((r) => [...r.cells].map((c) => c.textContent.trim()));
	}
	const stats = {};
	for (const s of document.querySelectorAll('.stat .value')) stats[s.id] = s.textContent;
	let key = null;
	try { key = sessionStorage.getItem('hardening.dashboard.key'); } catch (e) { /* none */ }
	return {
		state: document.documentElement.dataset.state,
		updates: Number(document.documentElement.dataset.updates || 0),
		loginVisible: vis(document.getElementById('login')),
		dashVisible: vis(document.getElementById('dash')),
		logoutVisible: vis(document.getElementById('logout')),
		scopeSwitchVisible: vis(document.getElementById('scope-switch')),
		bannerVisible: vis(document.getElementById('banner')),
		banner: [...document.querySelectorAll('#degraded li')].map((li) => li.textContent),
		who: document.getElementById('who').textContent.replace(/\s+/g, ' ').trim(),
		text: document.body.innerText,
		charts, tables, stats,
		storedKey: key,
		scripts: document.scripts.length,
		images: document.images.length,
		svgs: document.querySelectorAll('svg').length,
		elements: document.querySelectorAll('*').length,
	};
}

(async () => {
	const out = { console: [], pageErrors: [], csp: [], requests: [], data: [], phases: {} };
	const browser = await chromium.launch({
		executablePath: process.env.CHROMIUM,
		args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
			'--disable-component-update', '--disable-sync'],
	});
	try {
		const context = await browser.newContext({ viewport: { width: 1360, height: 900 }, colorScheme: 'light', deviceScaleFactor: 1 });
		// Runs before the page's own script, through the DevTools protocol (not under the CSP).
		await context.addInitScript(() => {
			window.__csp = [];
			document.addEventListener('securitypolicyviolation', (e) => {
				window.__csp.push({ directive: e.violatedDirective, effective: e.effectiveDirective, blocked: e.blockedURI, sample: e.sample, source: e.sourceFile, line: e.lineNumber });
			}, true);
		});
		const page = await context.newPage();
		page.on('console', (m) => {
			if (m.type() === 'error' || m.type() === 'warning') out.console.push({ type: m.type(), text: m.text(), url: m.location().url || '' });
		});
		page.on('pageerror', (e) => out.pageErrors.push(String(e && e.stack || e)));
		page.on('request', (r) => out.requests.push(r.url()));
		page.on('response', async (r) => {
			if (!/\/dashboard\/data(\?|$)/.test(r.url())) return;
			const h = await r.request().allHeaders();
			out.data.push({ url: r.url(), status: r.status(), authorization: h.authorization || '' });
		});
		const settled = (states) => page.waitForFunction((s) => s.includes(document.documentElement.dataset.state), states, { timeout: 20000 });
		const cspSeen = async () => { out.csp = await page.evaluate(() => window.__csp.slice()); };

		await page.goto(opt.url, { waitUntil: 'load' });
		await settled(['login', 'ready']);
		await page.waitForTimeout(300); // let a late fetch (the scope probe) land
		out.phases.start = await page.evaluate(facts);

		if (out.phases.start.state === 'login' && opt.key) {
			await page.fill('#key', opt.key);
			await page.click('#login-form button[type=submit]');
			await settled(['ready', 'login']);
			out.phases.afterLogin = await page.evaluate(facts);
		}
		if (await page.evaluate(() => document.documentElement.dataset.state) === 'ready') {
			await page.waitForFunction((n) => Number(document.documentElement.dataset.updates || 0) >= n, opt.minUpdates, { timeout: 30000 });
			// and the probe for the all-instances view has answered
			await page.waitForFunction(() => document.documentElement.dataset.scopes !== undefined, null, { timeout: 15000 });
			out.phases.ready = await page.evaluate(facts);

			// hover the rate-limit chart where the most happened: the tooltip shows time and values
			const box = await page.locator('#chart-ratelimit .hit').boundingBox();
			if (box) {
				await page.mouse.move(box.x + box.width * 0.5, box.y + box.height * 0.5);
				await page.waitForTimeout(100);
				out.hover = await page.evaluate(() => ({
					visible: !document.getElementById('tip').hidden,
					text: document.getElementById('tip').innerText,
					guide: document.querySelector('#chart-ratelimit .guide').getAttribute('visibility'),
				}));
				await page.mouse.move(0, 0);
				// the keyboard reaches the same values: focus the plot, step left
				await page.focus('#chart-ratelimit .hit');
				await page.keyboard.press('End');
				await page.keyboard.press('ArrowLeft');
				const kb = () => page.evaluate(() => ({
					visible: !document.getElementById('tip').hidden,
					text: document.getElementById('tip').innerText,
					cursor: document.getElementById('chart-ratelimit').dataset.cursor,
					focused: !!document.activeElement.closest('#chart-ratelimit'),
				}));
				out.keyboard = await kb();
				// a refresh redraws the chart: the focus and the tooltip stay
				const seen = await page.evaluate(() => Number(document.documentElement.dataset.updates));
				await page.waitForFunction((n) => Number(document.documentElement.dataset.updates) > n, seen, { timeout: 15000 });
				out.keyboardAfterRefresh = await kb();
				await page.evaluate(() => document.activeElement.blur());
			}
			if (opt.screenshot) {
				await page.screenshot({ path: opt.screenshot, fullPage: true });
				out.screenshot = opt.screenshot;
			}
			if (opt.screenshotDark) {
				await page.emulateMedia({ colorScheme: 'dark' });
				await page.waitForTimeout(100);
				await page.screenshot({ path: opt.screenshotDark, fullPage: true });
				out.screenshotDark = opt.screenshotDark;
				await page.emulateMedia({ colorScheme: 'light' });
			}
			// click a switch, then wait until the page draws an answer for it (a periodic
			// refresh landing in between must not pass for it)
			const next = async (click, attr, value) => {
				await page.click(click);
				await page.waitForFunction(([a, v]) => document.documentElement.dataset[a] === v, [attr, value], { timeout: 15000 });
				return page.evaluate(facts);
			};
			if (opt.switchRange) {
				out.phases.range1h = await next('#range-switch button[data-range="1h"]', 'range', '1h');
				out.phases.range15m = await next('#range-switch button[data-range="15m"]', 'range', '15m');
			}
			if (opt.switchScope && out.phases.ready.scopeSwitchVisible) {
				out.phases.scopeAll = await next('#scope-switch button[data-scope="all"]', 'scope', 'all');
			}
			if (opt.logout && await page.isVisible('#logout')) {
				await page.click('#logout');
				await settled(['login']);
				await page.waitForTimeout(5500); // a refresh would have run by now: it must not
				out.phases.afterLogout = await page.evaluate(facts);
			}
		}
		await cspSeen();
		out.phases.end = await page.evaluate(facts);
	} finally {
		await browser.close();
	}
	process.stdout.write(JSON.stringify(out) + '\n');
})().catch((e) => {
	process.stderr.write(String(e && e.stack || e) + '\n');
	process.exit(1);
});
