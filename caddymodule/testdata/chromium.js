'use strict';
// Launches Debian's Chromium ($CHROMIUM) through playwright-core, headless and kept off the
// network, for the browser scripts beside it.
const { chromium } = require('playwright-core');

exports.launch = () => chromium.launch({
	executablePath: process.env.CHROMIUM,
	args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
		'--disable-component-update', '--disable-sync'],
});
