package main

import (
	"log/slog"
	"os"

	"github.com/flowlock/flowlock/internal/config"
	"github.com/flowlock/flowlock/internal/identity"
)

// startExposure does what startup owes to what the service exposes and
// whom it trusts (issue 12): it keys the masks of identity-header values
// (stable across restarts when an admin token is set), and logs at WARN
// what the configuration allows but probably should not (config.Warnings:
// a token in the process list, misspelled FLOWLOCK_* variables, very wide
// trusted ranges, an identity header that must be verified upstream).
func startExposure(cfg config.Config, args []string, log *slog.Logger) {
	identity.SetMaskKey(cfg.AdminToken.Reveal())
	for _, w := range config.Warnings(cfg, args, os.Environ()) {
		log.Warn(w)
	}
}
