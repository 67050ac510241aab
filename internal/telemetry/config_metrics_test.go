package telemetry

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestConfigMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewConfigMetrics(reg)
	names := []string{"michi_config_reloads_total", "michi_config_reload_errors_total",
		"michi_config_last_reload_success_timestamp_seconds", "michi_config_info"}

	m.Succeeded("a1", time.Unix(1714557600, 500e6))
	m.Failed()
	m.Failed()
	m.Succeeded("b2", time.Unix(1714557700, 0))
	m.Succeeded("b2", time.Unix(1714557800, 0)) // same config again

	want := `
# HELP michi_config_info The version of the live configuration; always 1.
# TYPE michi_config_info gauge
michi_config_info{version="b2"} 1
# HELP michi_config_last_reload_success_timestamp_seconds Unix time of the last successful configuration reload.
# TYPE michi_config_last_reload_success_timestamp_seconds gauge
michi_config_last_reload_success_timestamp_seconds 1.7145578e+09
# HELP michi_config_reload_errors_total Configuration reloads rejected because the configuration had errors.
# TYPE michi_config_reload_errors_total counter
michi_config_reload_errors_total 2
# HELP michi_config_reloads_total Configuration reloads, by result.
# TYPE michi_config_reloads_total counter
michi_config_reloads_total{result="error"} 2
michi_config_reloads_total{result="success"} 3
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}
}

func TestConfigMetricsStartAtZero(t *testing.T) {
	reg := prometheus.NewRegistry()
	NewConfigMetrics(reg)
	want := `
# HELP michi_config_reloads_total Configuration reloads, by result.
# TYPE michi_config_reloads_total counter
michi_config_reloads_total{result="error"} 0
michi_config_reloads_total{result="success"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "michi_config_reloads_total"); err != nil {
		t.Error(err)
	}
}

func TestNilConfigMetrics(t *testing.T) {
	var m *ConfigMetrics
	m.Succeeded("v", time.Now()) // must not panic
	m.Failed()
}
