package config

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Size limits for the files Load reads, so that a wrong path (a log file,
// /dev/zero) fails at once instead of filling memory.
const (
	maxConfigFileSize = 1 << 20 // bytes
	maxTokenFileSize  = 4 << 10 // bytes
)

// Load returns the configuration given by command-line args (without the
// program name and subcommand), the environment (getenv, usually
// os.Getenv; nil means an empty environment) and the YAML file named by
// --config or FLOWLOCK_CONFIG, on top of Default. Flags beat environment
// variables, which beat the file. A list set by a higher layer replaces the
// list of a lower one; a repeated flag extends its own list. An empty
// environment variable counts as unset.
//
// Load reads the admin token file, then calls Validate. Every problem in
// the file and the environment is reported, each naming its source
// (FLOWLOCK_X, file:line: key, --flag); a command-line error stops at the
// first one. Help (-h, --help) returns an error that matches flag.ErrHelp;
// the caller prints Usage. Load itself writes nothing. On error it returns
// the zero Config.
func Load(args []string, getenv func(string) string) (Config, error) {
	if getenv == nil {
		getenv = func(string) string { return "" }
	}

	// Parse the flags once on their own: bad flags and -h fail before any
	// file is read, and --config is needed before the other layers.
	var scratch Config
	first := newFlagParser(&scratch)
	if err := first.parse(args); err != nil {
		return Config{}, err
	}
	path := getenv(envName("config"))
	if first.given["config"] {
		path = scratch.ConfigFile
	}

	c := Default()
	var errs []error
	if path != "" {
		if err := loadFile(&c, path); err != nil {
			errs = append(errs, err)
		}
	}
	errs = append(errs, loadEnv(&c, getenv)...)
	if err := errors.Join(errs...); err != nil {
		return Config{}, err
	}
	if err := newFlagParser(&c).parse(args); err != nil {
		return Config{}, err // cannot happen after the first pass succeeded
	}
	c.ConfigFile = path
	// Header names are case-insensitive (RFC 9110 §5.1) and Envoy passes
	// them lowercased, so X-Api-Key means x-api-key.
	c.IdentityHeader = strings.ToLower(c.IdentityHeader)
	c.FingerprintHeader = strings.ToLower(c.FingerprintHeader)

	if err := errors.Join(loadAdminToken(&c), loadRedisPassword(&c), c.Validate()); err != nil {
		return Config{}, err
	}
	return c, nil
}

// flagParser parses command-line flags into one Config.
type flagParser struct {
	fs    *flag.FlagSet
	given map[string]bool // flags set by this parse; a list flag set again appends
	err   error           // the first invalid value, worded by valueError
}

// newFlagParser returns a parser whose flags write to c.
func newFlagParser(c *Config) *flagParser {
	p := &flagParser{
		fs:    flag.NewFlagSet("flowlock-authz", flag.ContinueOnError),
		given: make(map[string]bool),
	}
	p.fs.SetOutput(io.Discard)
	p.fs.Usage = func() {}
	for i := range settings {
		s := &settings[i]
		p.fs.Var(&flagValue{p: p, s: s, c: c}, s.name, s.help)
	}
	return p
}

// parse parses args and rejects positional arguments.
func (p *flagParser) parse(args []string) error {
	err := p.fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return flag.ErrHelp
	case p.err != nil:
		return p.err
	case err != nil:
		return flagError(err)
	case p.fs.NArg() > 0:
		return strayError(args, p.fs.NArg())
	}
	return nil
}

// flagError rewords an error of the flag package, which names flags with a
// single dash and offers no suggestions.
func flagError(err error) error {
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: "); ok {
		name = strings.TrimLeft(name, "-")
		names := make([]string, len(settings))
		for i := range settings {
			names[i] = settings[i].name
		}
		if hint := suggest(name, names); hint != "" {
			return fmt.Errorf("command line: unknown flag --%s (did you mean --%s?)", name, hint)
		}
		return fmt.Errorf("command line: unknown flag --%s", name)
	}
	if name, ok := strings.CutPrefix(msg, "flag needs an argument: "); ok {
		return fmt.Errorf("command line: --%s needs a value", strings.TrimLeft(name, "-"))
	}
	return fmt.Errorf("command line: %w", err)
}

// strayError reports the first of n positional arguments at the end of
// args. A "true" or "false" after a boolean flag gets a hint, since the
// flag package only takes --demo=false.
func strayError(args []string, n int) error {
	i := len(args) - n
	stray := args[i]
	if i > 0 && args[i-1] != "--" {
		prev := strings.TrimLeft(args[i-1], "-")
		if s := lookupFlag(prev); s != nil && s.isBool() {
			if _, err := strconv.ParseBool(stray); err == nil {
				return fmt.Errorf("command line: unexpected argument %q (write --%s=%s)", stray, prev, stray)
			}
		}
	}
	return fmt.Errorf("command line: unexpected argument %q", stray)
}

// flagValue is the flag.Value of one setting.
type flagValue struct {
	p *flagParser
	s *setting
	c *Config
}

// String returns the current value; the flag package records it as the
// default. Secrets are never shown.
func (v *flagValue) String() string {
	if v == nil || v.s == nil || v.c == nil || v.s.secret {
		return ""
	}
	return v.s.format(v.c)
}

// Set parses one occurrence of the flag. The first occurrence of a list
// flag replaces the list; later ones extend it.
func (v *flagValue) Set(raw string) error {
	appendList := v.p.given[v.s.name]
	v.p.given[v.s.name] = true
	if err := v.s.set(v.c, raw, appendList); err != nil {
		err = valueError(v.s, "--"+v.s.name, raw, err)
		if v.p.err == nil {
			v.p.err = err
		}
		return err
	}
	return nil
}

// IsBoolFlag tells the flag package that a boolean flag takes no value.
func (v *flagValue) IsBoolFlag() bool { return v.s != nil && v.s.isBool() }

// valueError reports an invalid value of s from a source (a flag, an
// environment variable or a file position and key). The value of a secret
// is left out.
func valueError(s *setting, source, raw string, err error) error {
	if s.secret {
		return fmt.Errorf("%s: invalid value: %w", source, err)
	}
	return fmt.Errorf("%s: invalid value %q: %w", source, raw, err)
}

// loadEnv applies every non-empty FLOWLOCK_* variable to c and returns
// one error per invalid variable.
func loadEnv(c *Config, getenv func(string) string) []error {
	var errs []error
	for i := range settings {
		s := &settings[i]
		raw := getenv(s.env())
		if raw == "" {
			continue
		}
		if err := s.set(c, raw, false); err != nil {
			errs = append(errs, valueError(s, s.env(), raw, err))
		}
	}
	return errs
}

// readLimited reads the file at path, refusing files over limit bytes.
func readLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, limit)
	}
	return data, nil
}

// loadFile applies the YAML file at path to c.
func loadFile(c *Config, path string) error {
	data, err := readLimited(path, maxConfigFileSize)
	if err != nil {
		return fmt.Errorf("%s: %w", label("config"), err)
	}
	return applyYAML(c, path, data)
}

// applyYAML applies a YAML document, read from path, to c. It is strict:
// the top level must be a mapping, and unknown or repeated keys, values of
// the wrong type and a second document are errors. Every error names the
// file, the line and the key.
func applyYAML(c *Config, path string, data []byte) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil // an empty file sets nothing
		}
		return fmt.Errorf("%s: %w", path, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return fmt.Errorf("%s:%d: only one YAML document is allowed", path, extra.Line)
	} else if !errors.Is(err, io.EOF) {
		return fmt.Errorf("%s: %w", path, err)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		return nil
	}
	root := doc.Content[0]
	if root.Kind == yaml.ScalarNode && root.ShortTag() == "!!null" {
		return nil // only comments, or "~"
	}
	if root.Kind != yaml.MappingNode {
		return fmt.Errorf("%s:%d: must be a mapping of settings, e.g. grpc_addr: \":9191\"", path, root.Line)
	}

	dir := filepath.Dir(path)
	seen := make(map[string]int)
	var errs []error
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		key := k.Value
		if k.Kind != yaml.ScalarNode {
			errs = append(errs, fmt.Errorf("%s:%d: keys must be setting names", path, k.Line))
			continue
		}
		if line, dup := seen[key]; dup {
			errs = append(errs, fmt.Errorf("%s:%d: %s: repeated key (first on line %d)", path, k.Line, key, line))
			continue
		}
		seen[key] = k.Line
		s := lookupYAML(key)
		if s == nil {
			errs = append(errs, unknownKeyError(path, k.Line, key))
			continue
		}
		if v.Kind == yaml.AliasNode && v.Alias != nil {
			v = v.Alias
		}
		if err := s.setNode(c, v, dir); err != nil {
			source := fmt.Sprintf("%s:%d: %s", path, v.Line, key)
			if v.Kind == yaml.ScalarNode && v.ShortTag() != "!!null" {
				err = valueError(s, source, v.Value, err)
			} else {
				err = fmt.Errorf("%s: %w", source, err)
			}
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// unknownKeyError reports a key that names no setting, with a suggestion.
func unknownKeyError(path string, line int, key string) error {
	if key == "config" {
		return fmt.Errorf("%s:%d: config: cannot be set inside the config file", path, line)
	}
	var keys []string
	for i := range settings {
		if !settings[i].noFile {
			keys = append(keys, yamlKey(settings[i].name))
		}
	}
	if hint := suggest(key, keys); hint != "" {
		return fmt.Errorf("%s:%d: unknown key %q (did you mean %s?)", path, line, key, hint)
	}
	return fmt.Errorf("%s:%d: unknown key %q", path, line, key)
}

// setNode applies one YAML value to the field of s in c, checking its YAML
// type: strings must be strings ("9191" is not an address), integers
// integers, durations strings like "5m", lists sequences of strings (or one
// comma-separated string). Relative paths are made relative to dir.
func (s *setting) setNode(c *Config, n *yaml.Node, dir string) error {
	tag := n.ShortTag()
	if n.Kind == yaml.ScalarNode && tag == "!!null" {
		return errors.New(`has no value; write "" or [] to set it empty`)
	}
	if s.isList() {
		switch {
		case n.Kind == yaml.SequenceNode:
			if err := s.set(c, "", false); err != nil { // an empty sequence empties the list
				return err
			}
			for i, item := range n.Content {
				if item.Kind == yaml.AliasNode && item.Alias != nil {
					item = item.Alias
				}
				if item.Kind != yaml.ScalarNode || item.ShortTag() != "!!str" {
					return fmt.Errorf("item %d (line %d) must be a string", i+1, item.Line)
				}
				if err := s.set(c, item.Value, true); err != nil {
					return fmt.Errorf("item %d (line %d): %w", i+1, item.Line, err)
				}
			}
			return nil
		case n.Kind == yaml.ScalarNode && tag == "!!str":
			return s.set(c, n.Value, false)
		default:
			return errors.New("must be a list of strings (a YAML sequence)")
		}
	}
	if n.Kind != yaml.ScalarNode {
		return errors.New("must be a single value, not a list or mapping")
	}
	raw := n.Value
	switch s.field(c).(type) {
	case *string, *Secret:
		if tag != "!!str" {
			return errors.New("must be a string; quote the value")
		}
		if s.path && raw != "" && !filepath.IsAbs(raw) {
			raw = filepath.Join(dir, raw)
		}
	case *int:
		var i int
		if tag != "!!int" || n.Decode(&i) != nil {
			return errors.New("must be an integer")
		}
		raw = strconv.Itoa(i)
	case *float64:
		var f float64
		if (tag != "!!int" && tag != "!!float") || n.Decode(&f) != nil {
			return errors.New("must be a number")
		}
		raw = strconv.FormatFloat(f, 'g', -1, 64)
	case *bool:
		if tag != "!!bool" {
			return errors.New("must be true or false")
		}
	case *time.Duration:
		if tag != "!!str" && tag != "!!int" {
			return errors.New(`must be a duration such as "90s", "5m" or "1h30m"`)
		}
	}
	return s.set(c, raw, false)
}

// loadAdminToken reads AdminTokenFile, if set, into AdminToken. Neither
// its errors nor anything else here includes the token.
func loadAdminToken(c *Config) error {
	if c.AdminTokenFile != "" && c.AdminToken.IsSet() {
		return fmt.Errorf("%s: cannot be combined with %s; set only one", label("admin-token-file"), label("admin-token"))
	}
	return readSecretFile("admin-token-file", c.AdminTokenFile, &c.AdminToken)
}

// loadRedisPassword reads RedisPasswordFile, if set, into RedisPassword.
func loadRedisPassword(c *Config) error {
	return readSecretFile("redis-password-file", c.RedisPasswordFile, &c.RedisPassword)
}

// readSecretFile reads the secret in path (whitespace trimmed) into dst,
// for the setting flag; "" reads nothing. Its errors name the setting and
// the file, never the secret.
func readSecretFile(flag, path string, dst *Secret) error {
	if path == "" {
		return nil
	}
	data, err := readLimited(path, maxTokenFileSize)
	if err != nil {
		return fmt.Errorf("%s: %w", label(flag), err)
	}
	v := strings.TrimSpace(string(data))
	if v == "" {
		return fmt.Errorf("%s: %s is empty", label(flag), path)
	}
	*dst = NewSecret(v)
	return nil
}

// suggest returns the candidate closest to name (by edit distance, at most
// 2, or equal after swapping - and _), or "".
func suggest(name string, candidates []string) string {
	return suggestWithin(name, candidates, 2)
}

// suggestWithin is suggest with the largest edit distance it accepts.
func suggestWithin(name string, candidates []string, maxDist int) string {
	best, bestDist := "", maxDist+1
	alt := strings.NewReplacer("-", "_", "_", "-").Replace(strings.ToLower(name))
	for _, cand := range candidates {
		if cand == alt {
			return cand
		}
		if d := editDistance(strings.ToLower(name), cand); d < bestDist {
			best, bestDist = cand, d
		}
	}
	return best
}

// editDistance returns the Levenshtein distance between a and b, in bytes.
// Long inputs give a large distance without the quadratic work.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return max(len(a), len(b))
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
