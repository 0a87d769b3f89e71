//go:build !race

package quarantine

// raceEnabled reports a -race build, where allocation counts differ.
const raceEnabled = false
