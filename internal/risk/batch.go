package risk

import "time"

// BatchGap is how close a request must follow the start of its identity's
// current batch to join it: such a request adds no interval and no
// evaluation, and its Verdict repeats the latest one. Calibration mirrors
// the rule to count evaluations, because Confirm counts evaluations, not
// requests.
const BatchGap = time.Duration(batchGap)
