// A Go program with functions to probe, one mode per behaviour the probes
// must get right:
//
//	uprobe-go nested N SLEEP_MS      main.(*Server).handle calls main.parse, N times
//	uprobe-go goroutines G N SLEEP_MS G goroutines at once, each calling handle N times
//	uprobe-go panic N                main.guard recovers a panic of main.risky; so
//	                                 does main.catch, which is not probed
//	uprobe-go grow G DEPTH           main.deep recurses DEPTH deep on G new goroutines,
//	                                 growing (and so moving) their stacks mid-call
//	uprobe-go bench N                main.work N times back to back; with
//	                                 WORK_TIMING=1, the loop's CPU time per call
//
// main.square is small enough that the compiler inlines it everywhere: it has
// no symbol and cannot be probed.
//
// Build: go build -o uprobe-go .
package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"time"
)

type Server struct{ handled int }

//go:noinline
func (s *Server) handle(i int, sleep time.Duration) int {
	n := parse(i)
	if sleep > 0 {
		time.Sleep(sleep)
	}
	return n + square(i)
}

//go:noinline
func parse(i int) int { return i + 1 }

func square(i int) int { return i * i }

//go:noinline
func risky(i int) int {
	if i%4 == 0 {
		panic(fmt.Sprintf("call %d", i))
	}
	return i
}

//go:noinline
func guard(i int) (n int) {
	defer func() {
		if recover() != nil {
			n = -1
		}
	}()
	return risky(i)
}

//go:noinline
func catch(i int) (n int) {
	defer func() {
		if recover() != nil {
			n = -1
		}
	}()
	return risky(i)
}

//go:noinline
func deep(depth int) int {
	// A frame of 4 KiB: a few of them outgrow a new goroutine's stack.
	var pad [512]int
	pad[depth%512] = depth
	if depth == 0 {
		return pad[0]
	}
	return deep(depth-1) + pad[depth%512]
}

//go:noinline
func work(i int) int { return i*2 + 1 }

func arg(i int) int {
	if len(os.Args) <= i {
		fmt.Fprintln(os.Stderr, "usage: uprobe-go nested N SLEEP_MS | goroutines G N SLEEP_MS | panic N | grow G DEPTH | bench N")
		os.Exit(2)
	}
	n, err := strconv.Atoi(os.Args[i])
	if err != nil {
		fmt.Fprintf(os.Stderr, "uprobe-go: %q is not a number\n", os.Args[i])
		os.Exit(2)
	}
	return n
}

func main() {
	if len(os.Args) < 2 {
		arg(1)
	}
	switch os.Args[1] {
	case "nested":
		n, sleep := arg(2), time.Duration(arg(3))*time.Millisecond
		s, sum := &Server{}, 0
		for i := 0; i < n; i++ {
			sum += s.handle(i, sleep)
		}
		fmt.Printf("nested: %d calls, sum %d\n", n, sum)
	case "goroutines":
		g, n, sleep := arg(2), arg(3), time.Duration(arg(4))*time.Millisecond
		var start, done sync.WaitGroup
		start.Add(1)
		sums := make([]int, g)
		for k := 0; k < g; k++ {
			done.Add(1)
			go func(k int) {
				defer done.Done()
				start.Wait()
				s := &Server{}
				for i := 0; i < n; i++ {
					sums[k] += s.handle(i, sleep)
				}
			}(k)
		}
		start.Done()
		done.Wait()
		sum := 0
		for _, v := range sums {
			sum += v
		}
		fmt.Printf("goroutines: %d x %d calls, sum %d\n", g, n, sum)
	case "panic":
		n := arg(2)
		recovered := 0
		for i := 0; i < n; i++ {
			if guard(i) < 0 {
				recovered++
			}
			if catch(i) < 0 {
				recovered++
			}
		}
		fmt.Printf("panic: %d calls, %d recovered\n", 2*n, recovered)
	case "grow":
		g, depth := arg(2), arg(3)
		var done sync.WaitGroup
		for k := 0; k < g; k++ {
			done.Add(1)
			go func() {
				defer done.Done()
				deep(depth)
			}()
		}
		done.Wait()
		fmt.Printf("grow: %d goroutines, %d deep\n", g, depth)
	case "bench":
		n := arg(2)
		// The loop's CPU time is its thread's: keep it on one.
		runtime.LockOSThread()
		start := threadCPU()
		sum := 0
		for i := 0; i < n; i++ {
			sum += work(i)
		}
		if os.Getenv("WORK_TIMING") != "" && n > 0 {
			fmt.Fprintf(os.Stderr, "work: %.1f ns CPU per call\n", float64(threadCPU()-start)/float64(n))
		}
		fmt.Printf("bench: %d calls, sum %d\n", n, sum)
	default:
		arg(len(os.Args))
	}
}

// threadCPU is the calling thread's CPU time (user and system, so the probes'
// traps count) in nanoseconds.
func threadCPU() int64 {
	var ru syscall.Rusage
	const rusageThread = 1
	if err := syscall.Getrusage(rusageThread, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
