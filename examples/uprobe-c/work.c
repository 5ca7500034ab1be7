/* A program with functions to probe: `work` is called N times and calls `leaf`
 * once, so each call of `work` is a span with one child span.
 *
 *   work N [SLEEP_MS [CALLS_PER_SECOND]]
 *
 * SLEEP_MS makes each `work` call sleep that long; CALLS_PER_SECOND paces the
 * calls (0, the default, runs them back to back).
 *
 * Build: cc -O2 -g -o work work.c */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#if defined(__GNUC__) && !defined(__clang__)
#define PROBED __attribute__((noipa))
#else
#define PROBED __attribute__((noinline))
#endif

static double clock_seconds(clockid_t clock)
{
	struct timespec ts;
	clock_gettime(clock, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double now(void)
{
	return clock_seconds(CLOCK_MONOTONIC);
}

PROBED int leaf(int i)
{
	__asm__ volatile("" ::: "memory");
	return i * 2;
}

PROBED int work(int i, int sleep_ms)
{
	if (sleep_ms > 0) {
		struct timespec ts = {sleep_ms / 1000, (sleep_ms % 1000) * 1000000L};
		nanosleep(&ts, NULL);
	}
	return leaf(i) + 1;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: work N [SLEEP_MS [CALLS_PER_SECOND]]\n");
		return 2;
	}
	long n = atol(argv[1]);
	int sleep_ms = argc > 2 ? atoi(argv[2]) : 0;
	double rate = argc > 3 ? atof(argv[3]) : 0;
	double start = now(), cpu_start = clock_seconds(CLOCK_THREAD_CPUTIME_ID);
	long sum = 0;
	for (long i = 0; i < n; i++) {
		sum += work((int)i, sleep_ms);
		/* Pace in steps of 100 calls: sleep until the schedule catches up. */
		if (rate > 0 && i % 100 == 99) {
			double ahead = (i + 1) / rate - (now() - start);
			if (ahead > 0) {
				struct timespec ts = {(time_t)ahead, (long)((ahead - (time_t)ahead) * 1e9)};
				nanosleep(&ts, NULL);
			}
		}
	}
	/* For benchmarks: the loop's CPU time (user and kernel, so the probes' traps
	 * count, but not time spent waiting for a CPU), which is what the probes cost
	 * the program. */
	if (getenv("WORK_TIMING") && n > 0)
		fprintf(stderr, "work: %.1f ns CPU per call\n",
			(clock_seconds(CLOCK_THREAD_CPUTIME_ID) - cpu_start) * 1e9 / n);
	printf("work: %ld calls, sum %ld\n", n, sum);
	return 0;
}
