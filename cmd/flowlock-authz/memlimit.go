package main

import (
	"log/slog"
	"runtime/debug"

	"github.com/flowlock/flowlock/internal/calibrate"
	"github.com/flowlock/flowlock/internal/config"
	"github.com/flowlock/flowlock/internal/crowd"
	"github.com/flowlock/flowlock/internal/fleet"
	"github.com/flowlock/flowlock/internal/memlimit"
	"github.com/flowlock/flowlock/internal/risk"
)

// setMemoryLimit sets the Go runtime's soft memory limit from the
// container's memory limit, unless GOMEMLIMIT is set, and logs what it
// chose. The engine's table lives outside the Go heap (risk's slab), and
// so do the fixed tables (mappedFixed): their size at --max-clients is
// taken off the container's share first.
func setMemoryLimit(cfg config.Config, getenv func(string) string, log *slog.Logger) {
	table := risk.MappedAtCap(cfg.MaxClients) + mappedFixed(cfg)
	c, err := memlimit.Choose("/", getenv, memlimit.DefaultRatio, table)
	switch {
	case err != nil:
		log.Warn("memory limit: cannot read the container's memory limit; GOMEMLIMIT left unset", "err", err)
	case c.Source == "GOMEMLIMIT":
		log.Info("memory limit from the environment", "gomemlimit", getenv("GOMEMLIMIT"))
	case c.Limit == 0:
		log.Info("memory limit: no container memory limit found; GOMEMLIMIT left unset")
	default:
		debug.SetMemoryLimit(c.Limit)
		log.Info("memory limit from the container", "gomemlimit_bytes", c.Limit, "container_bytes", c.Container,
			"ratio", memlimit.DefaultRatio, "mapped_bytes_at_max_clients", table, "source", c.Source, "file", c.Path)
		if c.Tight(memlimit.DefaultRatio, table) {
			log.Warn("memory limit: the container is small for --max-clients; lower --max-clients or raise the container's memory limit",
				"max_clients", cfg.MaxClients, "mapped_bytes_at_max_clients", table, "container_bytes", c.Container)
		}
	}
}

// mappedFixed is what the service maps outside the Go heap whatever the
// clients: calibration's recorder (serve's calibrate.NewRecorder(0, ...)),
// the crowd count (wire.Build's crowd.New(0, 0)) and, when fleet detection
// is on, its tracks.
func mappedFixed(cfg config.Config) int64 {
	n := calibrate.Mapped(0) + crowd.Mapped(0)
	if cfg.FleetMinMembers > 0 {
		n += fleet.Mapped(fleet.Options{})
	}
	return n
}
