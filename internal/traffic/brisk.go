package traffic

import "strconv"

// Held-out brisk pagers and the bot nearest to them (issue 14). The H14
// scenarios in beats.go are the class's reference; these vary what a
// hidden sample of the same class may vary (the median, σ, how often and
// how long a person pauses) so that a change tuned to H14's draws shows
// whether it generalises. B7n is what a brisk pager would be without her
// pauses: a log-normal timer with a small σ, to show that the gates for
// people do not let it through.
var briskScenarios = []Scenario{
	briskPager("H14-1.5s", "brisk-pager-1.5s", "held-out brisk pager: rarer, shorter pauses",
		logNormal{1.5, 0.4}, 0.02, pareto{5, 2.5}),
	briskPager("H14-2.5s", "brisk-pager-2.5s", "held-out brisk pager: the smallest σ, heavy-tailed pauses",
		logNormal{2.5, 0.35}, 0.03, pareto{8, 1.2}),
	briskPager("H14-1.2s", "brisk-pager-1.2s", "held-out brisk pager: a wider σ, short pauses",
		logNormal{1.2, 0.55}, 0.05, pareto{4, 1.5}),
	briskPager("H14-2s3", "brisk-pager-2s-0.3", "held-out brisk pager: σ 0.3, the low end of the class",
		logNormal{2, 0.3}, 0.03, pareto{6, 1.5}),
	jittered("B7n", "lognormal-timer-2s", "B7n", "log-normal timer with a small σ that never pauses: a brisk pager without her pauses",
		"i.i.d. LN(2s, 0.3)", gap{kind: gapLogNormal, a: 2, b: 0.3}, min30),
	jittered("B7s", "lognormal-timer-2s-0.25", "B7s", "log-normal timer with σ 0.25 that never pauses: B7n, more regular",
		"i.i.d. LN(2s, 0.25)", gap{kind: gapLogNormal, a: 2, b: 0.25}, min30),
}

// briskPager returns an H14 scenario: one person paging with think times
// think and, after a share pauseP of the actions, a pause.
func briskPager(id, name, desc string, think logNormal, pauseP float64, pause pareto) Scenario {
	g := func(x float64) string { return strconv.FormatFloat(x, 'g', -1, 64) }
	return Scenario{
		ID: id, Name: name, Family: "H14", Label: Human, Horizon: min30, Clients: 1,
		Description: desc,
		Params: "think LN(" + g(think.Median) + "s, " + g(think.Sigma) + "); 1 call/action; p=" + g(pauseP) +
			" pause Pareto(" + g(pause.Xm) + "s, " + g(pause.Alpha) + ")",
		member: humans(brisk(think, pauseP, pause), desktopAgents),
	}
}
