package eviction

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
)

// The signals the agent observes, with the kubelet's names.
const (
	SignalMemoryAvailable = "memory.available"
	SignalNodeFsAvailable = "nodefs.available"
	SignalNodeFsInodes    = "nodefs.inodesFree"
	// The image filesystem is where the runtime keeps image layers (CRI ImageFsInfo); often the node's own.
	SignalImageFsAvailable = "imagefs.available"
	SignalImageFsInodes    = "imagefs.inodesFree"
	// SignalPIDAvailable is how many more processes (threads) the node can start.
	SignalPIDAvailable = "pid.available"
)

var supportedSignals = []string{SignalMemoryAvailable, SignalNodeFsAvailable, SignalNodeFsInodes,
	SignalImageFsAvailable, SignalImageFsInodes, SignalPIDAvailable}

// Threshold is one eviction threshold: the signal falls below Quantity, or below Percentage of its
// capacity. A soft threshold (GracePeriod above zero) must stay met for its grace period before it counts.
type Threshold struct {
	Signal      string
	Quantity    *resource.Quantity
	Percentage  float64 // 0..1, when Quantity is nil
	GracePeriod time.Duration
}

// ParseThresholds reads evictionHard as the kubelet's config file has it: signal → quantity or percentage.
func ParseThresholds(hard map[string]string) ([]Threshold, error) {
	var out []Threshold
	signals := make([]string, 0, len(hard))
	for s := range hard {
		signals = append(signals, s)
	}
	slices.Sort(signals)
	for _, signal := range signals {
		value := strings.TrimSpace(hard[signal])
		if !slices.Contains(supportedSignals, signal) {
			return nil, fmt.Errorf("%s: unsupported eviction signal (supported: %s)", signal, strings.Join(supportedSignals, ", "))
		}
		t := Threshold{Signal: signal}
		if pct, ok := strings.CutSuffix(value, "%"); ok {
			var v float64
			if _, err := fmt.Sscanf(pct, "%g", &v); err != nil || v < 0 || v > 100 {
				return nil, fmt.Errorf("%s: %q is not a percentage between 0%% and 100%%", signal, value)
			}
			t.Percentage = v / 100
		} else {
			q, err := resource.ParseQuantity(value)
			if err != nil || q.Sign() < 0 {
				return nil, fmt.Errorf("%s: %q is neither a quantity nor a percentage", signal, value)
			}
			t.Quantity = &q
		}
		out = append(out, t)
	}
	return out, nil
}

// ParseSoftThresholds reads evictionSoft and evictionSoftGracePeriod as the kubelet's config file has them:
// every soft threshold needs a grace period, and every grace period a soft threshold.
func ParseSoftThresholds(soft, gracePeriods map[string]string) ([]Threshold, error) {
	thresholds, err := ParseThresholds(soft)
	if err != nil {
		return nil, err
	}
	for i, t := range thresholds {
		value, ok := gracePeriods[t.Signal]
		if !ok {
			return nil, fmt.Errorf("%s: a soft threshold needs a grace period in evictionSoftGracePeriod", t.Signal)
		}
		d, err := time.ParseDuration(strings.TrimSpace(value))
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("%s: grace period %q is not a positive duration", t.Signal, value)
		}
		thresholds[i].GracePeriod = d
	}
	for signal := range gracePeriods {
		if _, ok := soft[signal]; !ok {
			return nil, fmt.Errorf("%s: a grace period without a soft threshold", signal)
		}
	}
	return thresholds, nil
}

// limit is the threshold's value in the signal's unit for a resource of the given capacity.
func (t Threshold) limit(capacity int64) int64 {
	if t.Quantity != nil {
		return t.Quantity.Value()
	}
	return int64(t.Percentage * float64(capacity))
}

func (t Threshold) String() string {
	if t.Quantity != nil {
		return t.Signal + "<" + t.Quantity.String()
	}
	return fmt.Sprintf("%s<%g%%", t.Signal, t.Percentage*100)
}
