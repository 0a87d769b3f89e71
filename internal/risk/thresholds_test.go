package risk

import (
	"fmt"
	"strings"
	"testing"
)

// TestThresholdsFollowTheConstants: the explain view's texts carry the
// numbers the score uses, so they change when the model does.
func TestThresholdsFollowTheConstants(t *testing.T) {
	for _, tc := range []struct{ text, want string }{
		{thresholds.periodic, fmt.Sprintf("< %.2f", perCut)},
		{thresholds.lowEntropy, fmt.Sprintf("< %.1f bits", entCut)},
		{thresholds.antiBursty, fmt.Sprintf("< %.2f", antiCutHuman)},
		{thresholds.periodicBursts, fmt.Sprintf("< %.2f", bperCut)},
		{thresholds.noPause, fmt.Sprintf("above %.0f", fastAfter)},
		{thresholds.continuity, fmt.Sprintf("above %d", contFloor)},
		{thresholds.human, fmt.Sprintf("A_n > %.2f", humanMinA)},
		{thresholds.shared, fmt.Sprintf("> %d intervals", sharedMinIntervals)},
		{thresholds.shared, fmt.Sprintf("crowd evidence (distinct user agents) with >= %d intervals", crowdMinIntervals)},
	} {
		if !strings.Contains(tc.text, tc.want) {
			t.Errorf("%q does not say %q", tc.text, tc.want)
		}
	}
}
