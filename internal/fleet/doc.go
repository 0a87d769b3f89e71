// Package fleet finds coordinated identities: many clients whose requests
// share one schedule, each too slow or too short-lived for its own timing to
// give it away (DETECTION.md's out-of-scope B9: a botnet spread over many
// addresses). One client's rhythm cannot catch such a bot; the fleet's can.
//
// The Check path only hands (identity, path, time) to Note, which drops the
// event into a bounded queue without waiting and without allocating (a full
// queue drops and counts). Everything else runs off the Check path, in Sweep,
// which the decision stack calls on its sweep ticker (and replay and the
// simulator at the same interval in virtual time):
//
//  1. Drain the queue into a bounded table of tracks, one per identity: the
//     identity's last RingSize requests (time and path hash), nothing more.
//  2. Turn every track into a few signatures, each a 64-bit key:
//     - lockstep: the arrival windows of its episodes (a request after 20 s
//     of silence starts one), quantised on four offset grids of 10 s, and
//     the three windows with the smallest hash on each grid (a bottom-3
//     MinHash). Clients fired by one controller share them; people who
//     merely opened the same page in the same minute share one window, not
//     three.
//     - period: the geometric mean of its last gaps when they are at least
//     20 s and agree within 12 %, quantised on four offset logarithmic
//     grids 10 % wide. Slow bots on one configured sleep share it. A member
//     is quarantined on two such gaps when no other identity has a period
//     near its fleet's, and on three otherwise.
//     - script: every run of four consecutive paths separated by at least
//     20 s each. Bots walking one script share them; people rarely pause
//     20 s three times in a row, and when they do they wander.
//  3. Count the identities per key (one map, no pairwise comparison) and
//     call every key with at least MinMembers identities a fleet.
//  4. Quarantine the members through the Admit callback (the policy's, so
//     allow lists hold and the quarantine list replicates as any other).
//
// Signatures are computed from the tracks, and a track is a set of
// (time, path) events, so two replicas' tables merge exactly (Merge): the
// union of each identity's events, in time order, keeping the latest
// RingSize. Counting then happens once, on the merged table, so an identity
// seen by both replicas is counted once. Replicas exchange the requests
// they noted through Redis (Outbox, Import; internal/shared carries them),
// so every replica holds every request. See docs/RATIONALE.md, "Fleet
// detection" and "Fleets within 15 minutes and across replicas".
//
// Bounds: MaxIdentities tracks of fixed size (about 250 bytes each with the
// map's share), a QueueSize-event queue, and per Sweep a pass over the
// tracks that is linear in their number.
package fleet
