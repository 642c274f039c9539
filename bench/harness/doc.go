// Package harness is what the benchmark commands bench-compare
// (bench/compare) and bench-http (bench/httpcompare) share to run targets
// side by side on one machine: children pinned to a CPU with taskset and
// stopped by PID, never by name (Children, Child, WaitReady, Ports); their
// CPU time and memory read from /proc (ProcStat, Descendants, CPUTicks,
// PSSKiB, ReadCPU); the machine's description (ClockTicks, ProcField,
// LoadAvg, KernelRelease, FirstLine); the median of the repetitions
// (Summarize); and the generated section of docs/BENCHMARKS.md (Section).
//
// Everything here is Linux-only: it reads /proc and uses taskset.
package harness
