// Package risk scores how machine-like a client's request rhythm is.
//
// An [Engine] keeps a small, fixed-size timing record per [identity.ID] and
// turns it, on every request, into a [Verdict]: a 0–100 score, the component
// that contributed most, whether the verdict is confirmed (quarantine now),
// and whether the stream looks like many humans behind one address. The
// package is pure: it never reads the clock (every entry point takes now),
// starts no goroutine, and knows nothing about gRPC, HTTP or quarantine.
//
// # The model
//
// The model is the one in DETECTION.md §7. Humans are bursty: a person's
// gaps mix sub-second client fan-out with think times of seconds to minutes,
// spanning many octaves, with long pauses. Scripts are regular. Every
// statistic below is scale-free (multiplying all gaps by a constant does not
// change it), so a 60 s beacon scores like a 0.5 s one, and a page-load
// burst with tiny absolute variance is not mistaken for a machine.
//
// Per identity the engine keeps the last 32 intervals (ms), the last 32
// intervals between burst starts (a burst starts after a gap of at least 1 s),
// an exponentially weighted mean and variance of the intervals, the length
// of the current stretch without a pause longer than 3 s, a sliding-window
// request counter over 60 s, a 24-bit bitmap of active 5-minute buckets, and a
// "shared until" time, and a pause clock, in 232 bytes. The EW statistics include the third
// central moment, for a long-horizon skewness. The two rings keep their entries in
// order by value as they are filled, so scoring sorts nothing. Requests
// less than 5 ms after the start of the current batch are one batch
// (HTTP/2 fan-out, retries): they count as requests but add no interval
// and cause no new evaluation; the rates below count a batch once, so
// they are rates of client actions, and nothing scoring reads changes
// between two evaluations. A timestamp before the previous one counts
// as a zero gap.
//
// With m intervals in the ring (m ≤ 32) and n_int intervals seen in all,
// each component is a probability-like value in [0, 1]:
//
//   - conf = clamp((m − 4)/12): evidence weight, full at 16 intervals.
//   - periodic: rcv = MAD/median of the ring (a robust coefficient of
//     variation, as RITA scores beacons); p_per = clamp((0.30 − rcv)/0.25),
//     weighted by conf, or by clamp((m − 4)/28) when at least 1/8 of the
//     gaps are below half or above 1.5 times the median (a timer mixed
//     with other traffic; see Shared addresses).
//   - low entropy: H = Shannon entropy (bits) of ⌊log₂ ms⌋ over the ring;
//     jittered beacons occupy one or two octaves, humans many;
//     p_lowH = clamp((2.0 − H)/1.2).
//   - anti-bursty: A = Kim–Jo finite-size burstiness A_n of the ring (with
//     n = m + 1 events) and A_ew = (CV_ew − 1)/(CV_ew + 1) from the EW
//     statistics; x = max(A, A_ew), so regularity must hold on both the
//     short and the long horizon. A regular human (one call per action,
//     log-normal σ ≈ 0.5) is statistically close to a 50 % jitter bot in
//     x; what tells them apart is shape (DETECTION.md §1.3): human gaps
//     are right-skewed, additive jitter is symmetric, and a person's
//     sub-second gaps are bursty fan-out, never a steady rhythm. So the
//     machine evidence is z = max(sym, pace), with sym = clamp((0.8 −
//     max(skew, skew_ew))/0.5) from the moment skewness of the ring and of
//     the EW statistics (again both horizons), and pace = 1 when the
//     ring's median gap is under 0.5 s (one call per page at 1 s is a
//     brisk person, issue 14). Then
//     p_anti = clamp((cut − x)/0.3), cut = −0.25 + 0.2·z (−0.25 for a
//     right-skewed human-paced rhythm, −0.05 for a symmetric or
//     sub-second one), raised to 0 at a sub-second pace when at most 1/32
//     of the requests were batched: a sub-second rhythm more regular
//     than Poisson with no overlapping requests is one script, since one
//     person's sub-second gaps are bursty fan-out, and fan-out or many
//     clients overlap. (At −0.05, one sequential scraper in 70 went past
//     70 requests: its ring of 32 read A ≈ −0.25 instead of its true
//     −0.41 by chance.) And
//     g_anti = 0.9 · clamp((n_int − 32)/span):
//     span is 32 (full weight at 64 intervals), shortened towards 8 (full
//     at 40) when the evidence is strong, by sym·clamp((−0.4 − x)/0.1)
//     or pace·clamp((−0.25 − x)/0.1), or sym when one client's ring
//     holds a gap below median/6 (additive jitter), whichever is larger. Strong,
//     symmetric regularity is thus decided sooner, and moderate,
//     skewed regularity needs the most evidence (a cheap stand-in for a
//     sequential test).
//   - the pause clock (issue 14): a fast, steady person's first minutes
//     look like a 50 % jitter timer in x; what differs is that she
//     pauses. A human pause is a gap over 3 s and at least 3 × the EW
//     mean. Unless x ≤ −0.6 (strong), the pace is sub-human, or one
//     client's ring holds a gap below median/6 (additive jitter: a
//     log-normal think time with σ ≤ 0.5 goes there once in thousands of
//     gaps, 50 % Gaussian jitter once in 20), g_anti and g_lowH are scaled
//     by the time without a pause over 4.5 minutes (20 once the stream has
//     paused), times 1 + (1 − sym): a right-skewed stream waits up to
//     twice as long. Low entropy needs 24 intervals for full weight and
//     periodicity weaker than MAD/median 0.06 at a human pace needs 32;
//     once the stream has paused, such periodicity is weighted by
//     clamp((−0.3 − x)/0.2): a person's tight core between pauses is a
//     fluke of the MAD, a timer's regularity shows in x as well.
//   - periodic cycle (issue 14): with L = log₂ of the ring's intervals in
//     arrival order, D = min over k = 1…4 of mean min(|L_i − L_{i−k}|, 1)
//     and S = mean |L_i − median L|; p_cyc = clamp((0.30 − D)/0.12) ·
//     clamp((0.8 − D/S)/0.3), weighted by clamp((m − 8)/16). A cycle of
//     2–4 beats leaves only jitter at its lag, a drifting period at lag
//     1; independent gaps give D/S ≈ √2 at every lag, so it never fires
//     on them.
//   - periodic bursts: MAD/median of the burst-start ring;
//     p_bper = clamp((m_B − 8)/8) · clamp((0.20 − b_rcv)/0.15). This catches
//     bots that fake human-looking bursts on a timer.
//   - no pause: S = seconds since the last gap longer than 3 s;
//     p_fast = clamp((S − 60)/120), with 180 for 60 once the stream has
//     made a human pause; weighted by max(sym, pace). One person rarely
//     goes three minutes without a 3 s pause, but a brisk one paging at 1
//     s may, and her gaps stay right-skewed; a timer's are symmetric.
//   - continuity: after 2 h observed and when max(A, A_ew) < 0,
//     p_cont = 0.5 · clamp((active 5-minute buckets of the last 24 − 20)/4).
//     DETECTION.md §7.2 has A < 0.2 and full weight; in simulation that
//     quarantined half of the calm humans who worked four hours without a
//     5-minute break, so here continuity supports other evidence and never
//     decides alone.
//   - human signature: h = 1 when 15–90 % of the ring's gaps are under 1 s,
//     at least 10 % are over 3 s, and A > 0.25 (the burst/think structure).
//
// They are fused with a noisy-OR, so one strong sign can decide:
//
//	p_reg = max(conf·p_per, 0.8·conf·p_lowH, 0.9·p_anti, p_bper, g_cyc·p_cyc)
//	score = 100 · [1 − (1 − p_reg)(1 − p_fast)(1 − p_cont)] · (1 − 0.3·h)
//
// The reason is the component with the largest weighted term. A verdict is
// [Verdict.Confirmed] when the score has been at or above the threshold on
// Confirm consecutive evaluations; the evidence gates plus confirmation keep
// the per-client false-positive rate low although every request is a new
// look at noisy statistics. Below 8 intervals the score is 0.
//
// # Shared addresses
//
// Many humans behind one NAT or CGNAT address merge into a near-Poisson
// stream at a high rate (Palm–Khintchine), which is just what a parallel
// scraper looks like. The label needs evidence of concurrency, not just a
// busy stream: more than 64 intervals, A_ew ≥ −0.2 (not more regular than
// Poisson), and either a 60 s rate of at least 3 req/s (far beyond one
// person) or at least 0.8 req/s with no pause longer than 3 s for 40 s.
// One person, however busy, pauses between actions; ten people on one
// address rarely leave it quiet for 3 s. Once labelled, the label is
// renewed while the rate stays at 0.5 req/s or more and A_ew ≥ −0.5, and
// it sticks for 900 s after it last held: when a NAT's humans go quiet,
// whatever timer shares the address (a poller, a bot) comes to the
// foreground, and that is no reason to start timing the address. While
// shared, low entropy, anti-bursty, no-pause and continuity are switched
// off; periodic and periodic-burst evidence stays, but a shared verdict is
// never confirmed. Such streams are for volume limits, not for timing
// quarantine.
//
// Two rules keep a busy address from being judged as one client before,
// or without, the shared label. Periodic bursts are off at 0.7 req/s or
// more over 60 s (over the stream's life while it is younger than 60 s):
// a burst is one client's action, and above what one person sustains the
// burst ring measures how several clients' requests interleave, not a
// timer. And periodicity in a ring where at least 1/8 of the gaps are off
// the median by more than half (a timer mixed with other traffic) gets
// full weight at 32 intervals instead of 16.
//
// # Known limits
//
// Timing alone cannot catch a bot that draws i.i.d. human-like gaps, replays
// a human trace, spreads over many addresses, or hides among humans behind a
// CGNAT; and it will flag a human whose browser tab polls on a timer unless
// that route is excluded before it reaches the engine. A very regular
// person making one call per action (DETECTION.md H10) is quarantined
// about 0.2 % of the time in simulation: a stretch of symmetric-looking
// gaps at a human pace is what a 50 % jitter bot looks like. A NAT whose
// first half minute carries little but a bot's timer is judged as that
// bot (about 1 % of simulated B12 streams). The shared label is an escape
// hatch too: a bot that keeps an address busy (0.8 req/s with no 3 s
// pause, or 3 req/s) with Poisson-like gaps is never confirmed by timing,
// and after that it keeps the label at 0.5 req/s unless it turns more
// regular than A_ew = −0.5; it is left to volume limits. So is a bot that
// fakes bursts on a timer at 0.7 req/s or more: periodic bursts are off
// at that rate. See DETECTION.md §4.
//
// # Memory
//
// A tracked identity costs one 256-byte slot: its 232-byte state, an
// 18-byte pointer-free key and a free-list link, in a slab mapped outside
// the Go heap (slab.go), plus about 5 bytes of open-addressing index: about
// 265 bytes of RSS, so the default cap of one million identities is about
// 265 MB when full (test/memory measures the running binary).
// The map is sharded; each shard has its own mutex and its own share of the
// cap, and a full shard evicts the least valuable of a few sampled entries
// (see [Options.MaxClients]).
package risk
