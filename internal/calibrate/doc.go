// Package calibrate turns recorded scores into thresholds: for a
// false-positive budget the operator chooses, it suggests --risk-threshold,
// --challenge-threshold and --confirm, with the detection delay of each
// choice.
//
// The unit is the identity-hour (one identity active in one clock hour).
// For each candidate confirm c, a Histogram keeps the per-identity-hour peak
// of the lowest score over c consecutive evaluations, which says at once
// whether any threshold T with that c would have quarantined the hour. The
// Recorder keeps these peaks live in a fixed table on the Check path; the
// Collector gathers them from a replayed trace; Suggest picks the settings.
package calibrate
