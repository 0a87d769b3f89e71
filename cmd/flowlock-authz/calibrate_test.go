package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestCalibrateErrors: a bad calibrate command line names what is wrong
// and does nothing.
func TestCalibrateErrors(t *testing.T) {
	trace := testdata + "human-spa.jsonl"
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{trace}, "--fpr is required"},
		{[]string{"--fpr", "2", trace}, `--fpr "2": want a share between 0 and 1`},
		{[]string{"--fpr", "x", trace}, `--fpr "x"`},
		{[]string{"--fpr", "0.01", "--floor", "101", trace}, `--floor "101": want a whole number from 1 to 100`},
		{[]string{"--fpr", "0.01", "--min-confirm", "5", "--max-confirm", "3", trace}, "--min-confirm 5 is above --max-confirm 3"},
		{[]string{"--fpr", "0.01", "--format", "yaml", trace}, `--format "yaml": want table or json`},
		{[]string{"--fpr", "0.01"}, "no input"},
		{[]string{"--fpr", "0.01", "--from", "http://127.0.0.1:1", trace}, "either --from or TRACE"},
		{[]string{"--fpr", "0.01", "--from", "http://127.0.0.1:1"}, "--from needs the admin token"},
		{[]string{"--fpr", "0.01", "--from", "ftp://x"}, `--from "ftp://x": want the dashboard's URL`},
		{[]string{"--fpr", "0.01", "--fpr"}, "--fpr needs a value"},
		{[]string{"--fpr", "0.01", "/nonexistent/trace.jsonl"}, "/nonexistent/trace.jsonl"},
	} {
		var out, errOut bytes.Buffer
		err := run(context.Background(), append([]string{"calibrate"}, tc.args...), func(string) string { return "" }, &out, &errOut)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("calibrate %q: %v; want an error with %q", tc.args, err, tc.want)
		}
		if out.Len() > 0 {
			t.Errorf("calibrate %q wrote %q", tc.args, out.String())
		}
	}
}
