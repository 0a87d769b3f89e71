package proxy

import (
	"os"
	"path/filepath"
	"testing"
)

// TestShippedConfigsValidate has each proxy check its shipped config with
// its own validator, defaults and all (the end-to-end test sets every
// address, so it never sees the defaults), and keeps the Caddyfile in
// caddy fmt's layout (Caddy warns at startup otherwise).
func TestShippedConfigsValidate(t *testing.T) {
	endToEnd(t)
	t.Run("nginx", func(t *testing.T) {
		bin := tool(t, "nginx")
		dir := t.TempDir()
		b, err := os.ReadFile(deployFile("nginx/nginx.conf"))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), b, 0o600); err != nil {
			t.Fatal(err)
		}
		global := "pid nginx.pid;"
		if os.Geteuid() == 0 {
			global += " user root;"
		}
		out, code := runTool(t, "", bin, "-t", "-p", dir+"/", "-c", "nginx.conf", "-e", filepath.Join(dir, "error.log"), "-g", global)
		if code != 0 {
			t.Errorf("nginx -t: exit %d:\n%s", code, out)
		}
	})
	t.Run("haproxy", func(t *testing.T) {
		bin := tool(t, "haproxy")
		t.Setenv("FLOWLOCK_LUA", deployFile("haproxy/flowlock.lua"))
		for _, v := range []string{"FLOWLOCK_LISTEN_HOST", "FLOWLOCK_LISTEN_PORT", "FLOWLOCK_FORWARD_AUTH", "FLOWLOCK_UPSTREAM"} {
			unsetenv(t, v)
		}
		if out, code := runTool(t, "", bin, "-c", "-f", deployFile("haproxy/haproxy.cfg")); code != 0 {
			t.Errorf("haproxy -c: exit %d:\n%s", code, out)
		}
	})
	t.Run("caddy", func(t *testing.T) {
		bin := tool(t, "caddy")
		dir := t.TempDir()
		t.Setenv("HOME", dir)
		t.Setenv("XDG_DATA_HOME", filepath.Join(dir, "data"))
		t.Setenv("XDG_CONFIG_HOME", filepath.Join(dir, "config"))
		for _, v := range []string{"CADDY_ADMIN", "FLOWLOCK_LISTEN_HOST", "FLOWLOCK_LISTEN_PORT", "FLOWLOCK_FORWARD_AUTH", "FLOWLOCK_UPSTREAM", "FLOWLOCK_CADDY_TRUSTED_PROXIES"} {
			unsetenv(t, v)
		}
		file := deployFile("caddy/Caddyfile")
		if out, code := runTool(t, "", bin, "validate", "--config", file, "--adapter", "caddyfile"); code != 0 {
			t.Errorf("caddy validate: exit %d:\n%s", code, out)
		}
		want, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if out, code := runTool(t, "", bin, "fmt", file); code != 0 || out != string(want) {
			t.Errorf("deploy/caddy/Caddyfile is not in caddy fmt's layout (exit %d); caddy fmt gives:\n%s", code, out)
		}
	})
}

// unsetenv unsets an environment variable for the rest of the test.
func unsetenv(t *testing.T, key string) {
	t.Helper()
	t.Setenv(key, "") // restores the old value at cleanup
	os.Unsetenv(key)
}
