/* The records `probes/process.bpf.c` sends to otel-run: a traced process was
 * forked, exec'd a program, exited, or exec'd a nested otel-run.
 *
 * `src/agent/processes/events.rs` mirrors these layouts with `#[repr(C)]`
 * structs; size assertions on both sides keep them in step. */
#ifndef OTEL_RUN_PROCESS_H
#define OTEL_RUN_PROCESS_H

#define OTEL_RUN_PROC_FORK 1
#define OTEL_RUN_PROC_EXEC 2
#define OTEL_RUN_PROC_EXIT 3
/* The process exec'd otel-run: that otel-run records its own subtree. */
#define OTEL_RUN_PROC_NESTED 4

/* Bytes of the executable's path and of the argument block kept per exec. */
#define OTEL_RUN_PATH_MAX 256
#define OTEL_RUN_ARGS_MAX 2048

/* Slots of the per-CPU `lost` counters. */
#define OTEL_RUN_PROC_LOST_RINGBUF 0 /* the ring buffer was full */
#define OTEL_RUN_PROC_LOST_MAP 1     /* the set of traced processes was full */
#define OTEL_RUN_PROC_LOST_SLOTS 2

/* Every record starts with this; a fork, an exit and a nested otel-run are
 * just this. */
struct otel_run_proc {
	__u64 time_ns;  /* CLOCK_MONOTONIC */
	__u32 kind;     /* OTEL_RUN_PROC_* */
	__u32 pid;      /* the process (tgid) */
	__u32 ppid;     /* fork: the parent process */
	__s32 status;   /* exit: the kernel's wait status (code << 8 | signal) */
};

struct otel_run_exec {
	struct otel_run_proc head;
	__u32 path_len; /* bytes of `path`, without the NUL */
	__u32 args_len; /* bytes of `args` kept: NUL-separated arguments */
	__u32 args_truncated; /* 1 when the arguments were longer than ARGS_MAX */
	__u32 _pad;
	char path[OTEL_RUN_PATH_MAX];
	char args[OTEL_RUN_ARGS_MAX];
};

#endif
