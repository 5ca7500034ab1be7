// SPDX-License-Identifier: GPL-2.0
/* Process spans for otel-run (`--trace-processes`).
 *
 * Only processes in `traced` are observed: the child otel-run spawns (caught
 * when otel-run forks it, before it execs) and every process they fork in
 * turn. Each fork, exec and exit of a traced process is one ring-buffer record;
 * user space pairs them into spans. Threads are not processes: a new thread is
 * not followed, and a process exits when its last thread does. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#include "process.h"

/* Just the fields needed of the kernel's structures; CO-RE relocates them
 * against the running kernel's BTF. */
typedef struct {
	int counter;
} otel_run_atomic_t;

struct signal_struct {
	otel_run_atomic_t live;
} __attribute__((preserve_access_index));

struct mm_struct {
	unsigned long arg_start;
	unsigned long arg_end;
} __attribute__((preserve_access_index));

struct super_block {
	__u32 s_dev;
} __attribute__((preserve_access_index));

struct inode {
	unsigned long i_ino;
	struct super_block *i_sb;
} __attribute__((preserve_access_index));

struct file {
	struct inode *f_inode;
} __attribute__((preserve_access_index));

struct linux_binprm {
	struct file *file;
	const char *filename;
} __attribute__((preserve_access_index));

struct task_struct {
	int pid;
	int tgid;
	int exit_code;
	struct mm_struct *mm;
	struct signal_struct *signal;
} __attribute__((preserve_access_index));

char LICENSE[] SEC("license") = "GPL";

/* Ring buffer of fork, exec and exit records. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 23);
} events SEC(".maps");

/* tgid -> 1 for every process followed. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 32768);
	__type(key, __u32);
	__type(value, __u8);
} traced SEC(".maps");

/* [0] = otel-run's own tgid while it spawns the child: what it forks is traced. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} launcher SEC(".maps");

/* Records that could not be sent, per reason (OTEL_RUN_PROC_LOST_*). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, OTEL_RUN_PROC_LOST_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} lost SEC(".maps");

/* otel-run's own executable (kernel device number and inode), set at load
 * time: a traced process that execs it is a nested otel-run. */
volatile const __u32 self_dev = 0;
volatile const __u64 self_ino = 0;

/* Bytes of unread records above which a record wakes the reader; below, the
 * reader's timer picks them up. Set by otel-run at load time. */
volatile const __u64 wakeup_bytes = 1 << 21;

static __always_inline void count_lost(__u32 slot)
{
	__u64 *n = bpf_map_lookup_elem(&lost, &slot);
	if (n)
		*n += 1;
}

static __always_inline int is_traced(__u32 tgid)
{
	return bpf_map_lookup_elem(&traced, &tgid) != 0;
}

static __always_inline void submit(void *record)
{
	__u64 unread = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA);
	bpf_ringbuf_submit(record, unread >= wakeup_bytes ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP);
}

/* A short record: fork, exit or nested otel-run. */
static __always_inline void send(__u32 kind, __u32 pid, __u32 ppid, __s32 status)
{
	struct otel_run_proc *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count_lost(OTEL_RUN_PROC_LOST_RINGBUF);
		return;
	}
	e->time_ns = bpf_ktime_get_ns();
	e->kind = kind;
	e->pid = pid;
	e->ppid = ppid;
	e->status = status;
	submit(e);
}

/* A traced process's children are traced, and so is the child otel-run spawns. */
SEC("raw_tracepoint/sched_process_fork")
int process_fork(struct bpf_raw_tracepoint_args *ctx)
{
	struct task_struct *child = (struct task_struct *)ctx->args[1];
	__u32 child_pid = BPF_CORE_READ(child, pid);
	__u32 child_tgid = BPF_CORE_READ(child, tgid);
	if (child_pid != child_tgid)
		return 0; /* a new thread of the same process */
	__u32 parent = bpf_get_current_pid_tgid() >> 32;
	__u32 zero = 0;
	__u32 *launcher_tgid = bpf_map_lookup_elem(&launcher, &zero);
	if (!is_traced(parent) && !(launcher_tgid && *launcher_tgid && *launcher_tgid == parent))
		return 0;
	__u8 one = 1;
	if (bpf_map_update_elem(&traced, &child_tgid, &one, BPF_ANY)) {
		count_lost(OTEL_RUN_PROC_LOST_MAP);
		return 0;
	}
	send(OTEL_RUN_PROC_FORK, child_tgid, parent, 0);
	return 0;
}

/* The comm of a task that exec'd otel-run (the kernel sets it to the file's
 * base name before this tracepoint). */
static __always_inline int is_otel_run(struct linux_binprm *bprm)
{
	struct file *file = BPF_CORE_READ(bprm, file);
	__u64 ino = BPF_CORE_READ(file, f_inode, i_ino);
	__u32 dev = BPF_CORE_READ(file, f_inode, i_sb, s_dev);
	if (self_ino && ino == self_ino && dev == self_dev)
		return 1;
	char comm[16];
	if (bpf_get_current_comm(comm, sizeof(comm)))
		return 0;
	const char name[] = "otel-run";
	for (int i = 0; i < sizeof(name); i++)
		if (comm[i] != name[i])
			return 0;
	return 1;
}

SEC("raw_tracepoint/sched_process_exec")
int process_exec(struct bpf_raw_tracepoint_args *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	if (!is_traced(tgid))
		return 0;
	struct linux_binprm *bprm = (struct linux_binprm *)ctx->args[2];
	if (is_otel_run(bprm)) {
		/* Its subtree is that otel-run's to record: stop following it here,
		 * before it runs, so none of its forks is followed. */
		bpf_map_delete_elem(&traced, &tgid);
		send(OTEL_RUN_PROC_NESTED, tgid, 0, 0);
		return 0;
	}
	struct otel_run_exec *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count_lost(OTEL_RUN_PROC_LOST_RINGBUF);
		return 0;
	}
	e->head.time_ns = bpf_ktime_get_ns();
	e->head.kind = OTEL_RUN_PROC_EXEC;
	e->head.pid = tgid;
	e->head.ppid = 0;
	e->head.status = 0;
	e->_pad = 0;
	const char *filename = BPF_CORE_READ(bprm, filename);
	long n = bpf_probe_read_kernel_str(e->path, sizeof(e->path), filename);
	e->path_len = n > 0 ? n - 1 : 0;
	/* The new program's arguments, already copied to its stack. */
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	unsigned long start = BPF_CORE_READ(task, mm, arg_start);
	unsigned long end = BPF_CORE_READ(task, mm, arg_end);
	__u64 len = end > start ? end - start : 0;
	e->args_truncated = 0;
	if (len >= OTEL_RUN_ARGS_MAX) {
		len = OTEL_RUN_ARGS_MAX - 1;
		e->args_truncated = 1;
	}
	len &= OTEL_RUN_ARGS_MAX - 1;
	if (bpf_probe_read_user(e->args, len, (const void *)start))
		len = 0;
	e->args_len = len;
	submit(e);
	return 0;
}

/* A process exits with its last thread; its wait status is that thread's
 * exit code, which for exit_group() or a fatal signal is the group's. */
SEC("raw_tracepoint/sched_process_exit")
int process_exit(struct bpf_raw_tracepoint_args *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	if (!is_traced(tgid))
		return 0;
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	if (BPF_CORE_READ(task, signal, live.counter) != 0)
		return 0; /* other threads live on */
	bpf_map_delete_elem(&traced, &tgid);
	send(OTEL_RUN_PROC_EXIT, tgid, 0, BPF_CORE_READ(task, exit_code));
	return 0;
}
