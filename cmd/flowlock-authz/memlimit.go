package main

import (
	"log/slog"
	"runtime/debug"

	"github.com/flowlock/flowlock/internal/config"
	"github.com/flowlock/flowlock/internal/memlimit"
	"github.com/flowlock/flowlock/internal/risk"
)

// setMemoryLimit sets the Go runtime's soft memory limit from the
// container's memory limit, unless GOMEMLIMIT is set, and logs what it
// chose. The engine's table lives outside the Go heap (risk's slab), so
// its size at --max-clients is taken off the container's share first.
func setMemoryLimit(cfg config.Config, getenv func(string) string, log *slog.Logger) {
	table := risk.MappedAtCap(cfg.MaxClients)
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
			"ratio", memlimit.DefaultRatio, "table_bytes_at_max_clients", table, "source", c.Source, "file", c.Path)
		if c.Tight(memlimit.DefaultRatio, table) {
			log.Warn("memory limit: the container is small for --max-clients; lower --max-clients or raise the container's memory limit",
				"max_clients", cfg.MaxClients, "table_bytes_at_max_clients", table, "container_bytes", c.Container)
		}
	}
}
