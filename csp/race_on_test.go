//go:build race

package csp

// raceEnabled: the race detector changes allocation counts; allocation assertions skip.
const raceEnabled = true
