package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// runLogsAB measures a change to the log shipper: the agent built from the repository and each of others
// (agent binaries built before the change, say) ship the same dataset in turn, round after round, each run
// followed by the ceiling for the bytes it sent (the raw limit writing the records' size), and compared
// with that run and the one before it (bracket). It prints each run, then per agent the median rate, ratio
// to the ceiling and CPU seconds per GB, and its rate against the repository's agent, taken within each
// round: on these machines the ceiling moves by a factor of two within an hour, and only runs side by side
// compare. Without the Collector and the steady run that `bench logs` adds, a round takes seconds.
func runLogsAB(ctx context.Context, others []string, containers int, megabytes int64, lineBytes, rounds int) error {
	if len(others) == 0 {
		return errors.New("logs-ab: name at least one agent binary to compare with")
	}
	for _, bin := range others {
		if _, err := os.Stat(bin); err != nil {
			return fmt.Errorf("logs-ab: %w", err)
		}
	}
	_, built, d, err := prepareLogsRun(containers, megabytes, lineBytes)
	if err != nil {
		return err
	}
	agents := append([]string{built}, others...)
	gb := float64(d.bytes) / 1e9
	rates, ceilings, cpu := make([][]float64, len(agents)), make([][]float64, len(agents)), make([][]float64, len(agents))
	fmt.Printf("Log shipping, agents in turn: %d MB in %d container logs (%d lines of %d bytes), %d rounds\n",
		d.bytes>>20, containers, d.lines, lineBytes, rounds)
	before := 0.0 // the ceiling's last run, right before the next agent's (bracket)
	for round := range rounds {
		for i, bin := range agents {
			run, err := shipDataset(ctx, agentShipper(bin, false), d)
			if err != nil {
				return fmt.Errorf("%s: %w (log: %s)", bin, err, filepath.Join(logsRunDir, "nodeagent.log"))
			}
			elapsed, _, err := runLimit(d, rawLimit, float64(run.sentBytes)/float64(d.bytes))
			if err != nil {
				return err
			}
			rate, after := float64(d.bytes)/run.elapsed.Seconds(), float64(d.bytes)/elapsed.Seconds()
			ceiling := bracket(before, after)
			before = after
			rates[i], ceilings[i] = append(rates[i], rate), append(ceilings[i], ceiling)
			cpu[i] = append(cpu[i], run.cpuSeconds/gb)
			fmt.Printf("  round %d  %-40s %6.0f MB/s  %.2f of the ceiling  %.2f CPU s per GB\n", round+1, bin, rate/1e6,
				rate/ceiling, cpu[i][round])
		}
	}
	fmt.Printf("%-40s %10s %12s %14s %16s\n", "agent (medians)", "MB/s", "/ ceiling", "CPU s per GB", "MB/s / first's")
	for i, bin := range agents {
		fmt.Printf("%-40s %10.0f %12.2f %14.2f %16.2f\n", bin, median(rates[i])/1e6, medianRatio(rates[i], ceilings[i]),
			median(cpu[i]), medianRatio(rates[i], rates[0]))
	}
	return nil
}
