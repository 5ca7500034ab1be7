/* The one record the probes send to otel-run: a finished function call.
 *
 * `src/probes/events.rs` mirrors this layout with a `#[repr(C)]` struct; a
 * size assertion on both sides keeps them in step. */
#ifndef OTEL_RUN_EVENT_H
#define OTEL_RUN_EVENT_H

/* Deepest nesting of probed calls tracked per thread (per goroutine in Go
 * programs); deeper calls are counted as lost. */
#define OTEL_RUN_MAX_DEPTH 32

/* Slots of the per-CPU `lost` counters. */
#define OTEL_RUN_LOST_RINGBUF 0 /* the ring buffer was full */
#define OTEL_RUN_LOST_DEPTH 1   /* nesting deeper than OTEL_RUN_MAX_DEPTH */
#define OTEL_RUN_LOST_UNWOUND 2 /* a Go call that never returned: a panic unwound it */
#define OTEL_RUN_LOST_GOROUTINES 3 /* more goroutines in probed calls than `goroutines` holds */
#define OTEL_RUN_LOST_SLOTS 4

struct otel_run_call {
	__u64 start_ns;       /* CLOCK_MONOTONIC at entry */
	__u64 end_ns;         /* CLOCK_MONOTONIC at return */
	__u64 span_id;        /* random, never 0 */
	__u64 parent_span_id; /* the enclosing probed call on this thread (goroutine), or 0 */
	__u64 root_span_id;   /* the outermost probed call on this thread (goroutine) */
	__u64 cookie;         /* which probed function: an index into otel-run's table */
	__u32 pid;            /* process (tgid) */
	__u32 tid;            /* thread (at return, for a Go call) */
	__u32 depth;          /* 0 for a top-level call */
	__u32 _pad;
};

#endif
