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
//
// Two kinds of identity-hour are no evidence of innocence and are kept out
// of the false-positive rate:
//
//   - Caught hours: the service refused the identity as quarantined (or
//     admitted it) during the hour. They are the bots it caught, as far as
//     it knows; counted as innocent, they would push the threshold just
//     above their own scores and release them. They are kept apart
//     (Snapshot.Caught, Collector.Caught), not dropped. A labelled human is
//     innocent whatever the replay did.
//   - Hours that could not have seen a quarantine: the rate's denominator
//     is the hours in which an unshared evaluation ended a run of at least
//     the shortest confirm considered (Histogram.AtRisk). One request is no
//     evaluation, so without this rule a flood of one-request identities,
//     cheap with IPv6 /64s, would dilute the budget and lower the threshold
//     onto real people.
package calibrate
