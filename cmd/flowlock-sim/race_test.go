//go:build race

package main

// raceEnabled is set when the race detector is on, which slows the
// detection test down about tenfold.
const raceEnabled = true
