package traffic

// Held-out brisk pagers and the bot nearest to them (issue 14). The H14
// scenarios in beats.go are the class's reference; these vary what a
// hidden sample of the same class may vary (the median, σ, how often and
// how long a person pauses) so that a change tuned to H14's draws shows
// whether it generalises. B7n is what a brisk pager would be without her
// pauses: a log-normal timer with a small σ, to show that the gates for
// people do not let it through.
var briskScenarios = []Scenario{
	{
		ID: "H14-1.5s", Name: "brisk-pager-1.5s", Family: "H14", Label: Human, Horizon: min30, Clients: 1,
		Description: "held-out brisk pager: rarer, shorter pauses",
		Params:      "think LN(1.5s, 0.4); 1 call/action; p=0.02 pause Pareto(5s, 2.5)",
		member:      humans(brisk(logNormal{1.5, 0.4}, 0.02, pareto{5, 2.5}), desktopAgents),
	},
	{
		ID: "H14-2.5s", Name: "brisk-pager-2.5s", Family: "H14", Label: Human, Horizon: min30, Clients: 1,
		Description: "held-out brisk pager: the smallest σ, heavy-tailed pauses",
		Params:      "think LN(2.5s, 0.35); 1 call/action; p=0.03 pause Pareto(8s, 1.2)",
		member:      humans(brisk(logNormal{2.5, 0.35}, 0.03, pareto{8, 1.2}), desktopAgents),
	},
	{
		ID: "H14-1.2s", Name: "brisk-pager-1.2s", Family: "H14", Label: Human, Horizon: min30, Clients: 1,
		Description: "held-out brisk pager: a wider σ, short pauses",
		Params:      "think LN(1.2s, 0.55); 1 call/action; p=0.05 pause Pareto(4s, 1.5)",
		member:      humans(brisk(logNormal{1.2, 0.55}, 0.05, pareto{4, 1.5}), desktopAgents),
	},
	jittered("B7n", "lognormal-timer-2s", "B7n", "log-normal timer with a small σ that never pauses: a brisk pager without her pauses",
		"i.i.d. LN(2s, 0.3)", gap{kind: gapLogNormal, a: 2, b: 0.3}, min30),
}
